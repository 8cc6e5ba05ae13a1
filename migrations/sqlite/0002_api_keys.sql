-- Key lifecycle: a key may carry an expiry, can be revoked (never deleted: its id stays in the
-- idempotency records it wrote), and remembers when it was last used. last_used_at is written
-- at most about once a minute per key and server, never per request. Instants are microseconds
-- since the Unix epoch, like every instant of this schema.
alter table api_keys add column expires_at integer;
alter table api_keys add column revoked_at integer;
alter table api_keys add column last_used_at integer;
