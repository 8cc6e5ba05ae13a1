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
    -- The event's figures: a JSON object.
    data         jsonb not null
);

-- What the relay numbers next.
create index events_unnumbered on events (event_no) where seq is null;
-- ListEvents/WatchEvents of one member.
create index events_by_member on events (member_id, seq);
