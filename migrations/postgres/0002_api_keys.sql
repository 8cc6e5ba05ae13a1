-- Key lifecycle: a key may carry an expiry, can be revoked (never deleted: its id stays in the
-- idempotency records it wrote), and remembers when it was last used. last_used_at is written
-- at most about once a minute per key and replica, never per request.
alter table api_keys add column expires_at timestamptz;
alter table api_keys add column revoked_at timestamptz;
alter table api_keys add column last_used_at timestamptz;
