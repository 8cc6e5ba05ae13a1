-- Fewer index entries per event (issue #24). A sale writes three events; each wrote a leaf of
-- the table, of `event_no`'s AUTOINCREMENT counter, and of four indexes, one of them (`event_id`,
-- random) a leaf of its own per event. Here one writer numbers rows as it inserts them, so
-- `seq` itself can be the table's key (rowid): rows append to the table's last leaf. And:
-- - nothing reads an event by `event_id` (ids are 100 random bits, made by omo): no index;
-- - `dedupe_key` is null but for the few events announced once: the unique index leaves the
--   nulls out.
-- `seq` is still given as max(seq) + 1 by the flush, never by SQLite: a rowid skipped by an
-- insert that the dedupe key turned away would leave a hole in the feed. The retention purge
-- never deletes the newest event, so the max never goes back and no seq is given twice.
create table events_by_seq (
    seq          integer primary key,
    event_id     text not null,
    type         text not null,
    occurred_at  integer not null,
    member_id    text not null,
    -- Events announced once (a lot's expiry reminder, a nearby offer per member, store and
    -- day) carry a key: a second insert with it writes nothing. Null for the others.
    dedupe_key   text,
    -- The event's figures: a JSON object.
    data         text not null
);
insert into events_by_seq (seq, event_id, type, occurred_at, member_id, dedupe_key, data)
select seq, event_id, type, occurred_at, member_id, dedupe_key, data
from events
order by seq;
drop table events;
alter table events_by_seq rename to events;

create unique index events_dedupe_key on events (dedupe_key) where dedupe_key is not null;
-- ListEvents/WatchEvents of one member.
create index events_by_member on events (member_id, seq);
