-- Fewer index entries per event (issue #24). A sale writes three events, and each was inserted
-- with six index entries and numbered by the relay with five more (the update that sets `seq`
-- changes an indexed column, so it is never a HOT update): more than half of what PostgreSQL
-- indexed per sale. Now an event is inserted with two (its key and `events_unnumbered`) and
-- numbered with three (its key, `seq` and the member's index):
-- - nothing reads an event by `event_id` (ids are 100 random bits, made by omo): no index;
-- - `dedupe_key` is null but for the few events announced once: the unique index leaves the
--   nulls out;
-- - the member's index holds numbered events only (every read of it asks for `seq > N`).
alter table events drop constraint events_event_id_key;
alter table events drop constraint events_dedupe_key_key;
create unique index events_dedupe_key on events (dedupe_key) where dedupe_key is not null;
drop index events_by_member;
create index events_by_member on events (member_id, seq) where seq is not null;
