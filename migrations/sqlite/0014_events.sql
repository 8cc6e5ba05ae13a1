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
    -- The event's figures: a JSON object.
    data         text not null
);

-- ListEvents/WatchEvents of one member.
create index events_by_member on events (member_id, seq);
