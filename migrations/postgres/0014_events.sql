-- Events out (issue #22, domain::event): the outbox. A batch's flush writes the events of its
-- ledger changes in the same transaction (a part of the flush statement), so an event commits
-- with its change or not at all.
--
-- `event_no` is private, drawn from a sequence by concurrent transactions, which commit in
-- another order than they drew: a reader trusting it could pass a row whose transaction is
-- still in flight and never see it. `seq` is the public position in the feed: null until the
-- relay (engine::events, under an advisory lock, one at a time across replicas) numbers the
-- committed rows, so seqs are given in commit order and a reader resuming "after seq N" never
-- misses nor repeats an event.
create table events (
    event_no     bigserial primary key,
    seq          bigint unique,
    event_id     text not null unique,
    type         text not null,
    occurred_at  timestamptz not null,
    member_id    text not null,
    -- Events announced once (a lot's expiry reminder, a nearby offer per member, store and
    -- day) carry a key: a second insert with it writes nothing. Null for the others.
    dedupe_key   text unique,
    -- The event's figures: a JSON object.
    data         jsonb not null
);

-- What the relay numbers next.
create index events_unnumbered on events (event_no) where seq is null;
-- ListEvents/WatchEvents of one member.
create index events_by_member on events (member_id, seq);

-- Webhooks (domain::webhook). The secret is kept in clear, unlike API keys: the worker signs
-- every delivery with it (an HMAC needs the key itself, a hash would not do). `cursor_seq`: the
-- last seq whose delivery to this webhook has been planned (under the row's lock, so replicas
-- plan each delivery once). request_id/request_hash: the CreateWebhook request, so a retry
-- gets the same answer.
create table webhooks (
    webhook_id    text primary key,
    url           text not null,
    types         jsonb not null,
    enabled       boolean not null,
    secret        text not null,
    request_id    text not null,
    request_hash  text not null,
    cursor_seq    bigint not null,
    created_at    timestamptz not null,
    updated_at    timestamptz not null
);

-- One event's delivery to one webhook, with its attempts (PENDING until a 2xx, FAILED after
-- 24 hours of retries). A worker claims due attempts with `for update skip locked` and moves
-- next_attempt_at a lease ahead: replicas never make the same attempt, and a worker that dies
-- mid-attempt leaves it due again once the lease ends (at least once).
create table webhook_deliveries (
    webhook_id        text not null references webhooks (webhook_id),
    seq               bigint not null,
    event_id          text not null,
    state             text not null,
    attempts          integer not null,
    last_status_code  integer not null,
    next_attempt_at   timestamptz not null,
    created_at        timestamptz not null,
    primary key (webhook_id, seq)
);

create index webhook_deliveries_due on webhook_deliveries (next_attempt_at)
    where state = 'PENDING';
