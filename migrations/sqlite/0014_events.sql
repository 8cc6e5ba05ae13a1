-- Events out (issue #22, domain::event): the outbox. A batch's flush writes the events of its
-- ledger changes in the same transaction, so an event commits with its change or not at all.
--
-- `event_no` is private, in insert order; `seq` is the public position in the feed, in commit
-- order. SQLite has one writer at a time (BEGIN IMMEDIATE holds the write lock until COMMIT), so
-- the flush gives each row the next seq as it inserts it: insert order is commit order here.
create table events (
    event_no     integer primary key autoincrement,
    seq          integer unique,
    event_id     text not null unique,
    type         text not null,
    occurred_at  integer not null,
    member_id    text not null,
    -- Events announced once (a lot's expiry reminder, a nearby offer per member, store and
    -- day) carry a key: a second insert with it writes nothing. Null for the others.
    dedupe_key   text unique,
    -- The event's figures: a JSON object.
    data         text not null
);

-- ListEvents/WatchEvents of one member.
create index events_by_member on events (member_id, seq);

-- Webhooks (domain::webhook). The secret is kept in clear, unlike API keys: the worker signs
-- every delivery with it (an HMAC needs the key itself, a hash would not do). `cursor_seq`: the
-- last seq whose delivery to this webhook has been planned. request_id/request_hash: the
-- CreateWebhook request, so a retry gets the same answer.
create table webhooks (
    webhook_id    text primary key,
    url           text not null,
    types         text not null,
    enabled       integer not null,
    secret        text not null,
    request_id    text not null,
    request_hash  text not null,
    cursor_seq    integer not null,
    created_at    integer not null,
    updated_at    integer not null
);

-- One event's delivery to one webhook, with its attempts (PENDING until a 2xx, FAILED after
-- 24 hours of retries). A claimed attempt moves next_attempt_at a lease ahead, so a worker that
-- dies mid-attempt leaves it due again (at least once).
create table webhook_deliveries (
    webhook_id        text not null references webhooks (webhook_id),
    seq               integer not null,
    event_id          text not null,
    state             text not null,
    attempts          integer not null,
    last_status_code  integer not null,
    next_attempt_at   integer not null,
    created_at        integer not null,
    primary key (webhook_id, seq)
);

create index webhook_deliveries_due on webhook_deliveries (next_attempt_at)
    where state = 'PENDING';
