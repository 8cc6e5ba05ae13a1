-- Times to redemption are kept by the hour beyond a day (`domain::summary::redemption_bucket`):
-- a campaign then has a few thousand rows however long its coupons live, not one per minute.
-- The server rebuilds the summaries from the ledger when it starts. (SQLite's migration 0009
-- also stores its summaries in key order; PostgreSQL reads them through the primary key's
-- index.)

-- One store's activity and visits (GetActivity with a store_id: a year by day of one store
-- reads its 365 rows, not every store's). A row's key never changes after its insert, so the
-- flush's updates of its figures leave these indexes alone.
create index activity_summary_by_store on activity_summary (store_id, period);
create index visit_summary_by_store on visit_summary (store_id, visit_date);

insert into summary_rebuilds (reason)
values ('migration 0009 counts times to redemption by the hour beyond a day')
on conflict do nothing;
