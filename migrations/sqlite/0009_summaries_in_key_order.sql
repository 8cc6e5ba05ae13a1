-- The report summaries are read in ranges of their primary keys (a year of activity, the
-- lot summary by month, a campaign's times to redemption): without a rowid, a table is stored
-- in its primary key's order, so such a range is one sequential read rather than an index
-- walk with a table lookup per row (the lot summary's months took 41 ms rather than 19 at a
-- million members). The tables are re-created empty and rebuilt from the ledger when the
-- server starts (`summary_rebuilds`), which also recounts the times to redemption by the hour
-- beyond a day (`domain::summary::redemption_bucket`).

drop table activity_summary;
create table activity_summary (
    period           integer not null,
    channel          text not null,
    store_id         text not null,
    shard            integer not null,
    points_earned    integer not null,
    points_redeemed  integer not null,
    points_expired   integer not null,
    orders           integer not null,
    sales_e4         integer not null,
    receipts         integer not null,
    primary key (period, channel, store_id, shard)
) without rowid;

drop table visit_summary;
create table visit_summary (
    visit_date  text not null,
    store_id    text not null,
    shard       integer not null,
    visits      integer not null,
    primary key (visit_date, store_id, shard)
) without rowid;

drop table coupon_summary;
create table coupon_summary (
    campaign_id  text not null,
    variant_id   text not null,
    source       text not null,
    state        text not null,
    shard        integer not null,
    coupons      integer not null,
    discount_e4  integer not null,
    primary key (campaign_id, variant_id, source, state, shard)
) without rowid;

drop table redemption_summary;
create table redemption_summary (
    campaign_id  text not null,
    channel      text not null,
    shard        integer not null,
    coupons      integer not null,
    primary key (campaign_id, channel, shard)
) without rowid;

drop table redemption_time_summary;
create table redemption_time_summary (
    campaign_id  text not null,
    seconds      integer not null,
    shard        integer not null,
    coupons      integer not null,
    primary key (campaign_id, seconds, shard)
) without rowid;

drop table lot_summary;
create table lot_summary (
    expires_quarter   integer not null,
    matures_quarter   integer not null,
    state             text not null check (state in ('pending', 'available')),
    shard             integer not null,
    remaining_points  integer not null,
    held_points       integer not null,
    primary key (expires_quarter, matures_quarter, state, shard)
) without rowid;

-- One store's activity and visits (GetActivity with a store_id: a year by day of one store
-- reads its 365 rows, not every store's). A row's key never changes after its insert, so the
-- flush's updates of its figures leave these indexes alone.
create index activity_summary_by_store on activity_summary (store_id, period);
create index visit_summary_by_store on visit_summary (store_id, visit_date);

insert into summary_rebuilds (reason)
values ('migration 0009 stored the summaries in key order, times to redemption by the hour beyond a day');
