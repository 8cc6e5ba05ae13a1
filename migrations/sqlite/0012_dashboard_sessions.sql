-- Dashboard sessions (`omo serve --http`): logging in with an admin API key opens one; the
-- browser's cookie carries only the session id, and only its SHA-256 is stored (like a key's),
-- so a copy of the database opens no session. A session ends at logout (its row is deleted),
-- after an hour without use or twelve hours after it opened (domain::session), and as soon as
-- its key is revoked or expires: each request reads the session joined to its key. In the
-- database, not in process memory, so that every replica and a restarted server know it.
-- csrf_token is the random token every form of the session must send back; it is no
-- credential on its own (the session cookie is), so it is kept as it is shown.
-- Instants are microseconds since the Unix epoch, like every instant of this schema.
create table dashboard_sessions (
    session_hash  text primary key,
    key_id        text not null references api_keys (key_id),
    csrf_token    text not null,
    created_at    integer not null,
    last_seen_at  integer not null
);
