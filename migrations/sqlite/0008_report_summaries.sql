-- Report summaries (issue #11, docs/reports.md, domain::summary). Each row is a cache of a sum
-- over the ledger, written by the batch flush in the transaction of the rows it sums (one
-- upsert per row per batch) and compared with a recomputation by `omo verify`. `shard` is the
-- flushing writer's number (0: the sweeper and admins); a report sums the shards.
--
-- Instants are integer microseconds as everywhere here. Money is integer ten-thousandths
-- (`_e4`; Money has at most 4 fractional digits): decimal text cannot be added in SQL, which
-- would add it as a float, and an integer sum is exact.

-- Activity per channel ('' = none), store ('' = none) and period: a store's rows are kept per
-- local day (period = the day's first instant in the store's zone), the others per quarter
-- hour (UTC), which lies within one local day of any zone.
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
);

-- Visits per store and local date ("2026-11-30"), counted as the flush inserts them.
create table visit_summary (
    visit_date  text not null,
    store_id    text not null,
    shard       integer not null,
    visits      integer not null,
    primary key (visit_date, store_id, shard)
);

-- Coupons per campaign, variant ('' = none), source key (domain::report::source_key) and state,
-- with the sum of their discounts.
create table coupon_summary (
    campaign_id  text not null,
    variant_id   text not null,
    source       text not null,
    state        text not null,
    shard        integer not null,
    coupons      integer not null,
    discount_e4  integer not null,
    primary key (campaign_id, variant_id, source, state, shard)
);

-- Redeemed coupons per campaign and the channel of the order that redeemed them.
create table redemption_summary (
    campaign_id  text not null,
    channel      text not null,
    shard        integer not null,
    coupons      integer not null,
    primary key (campaign_id, channel, shard)
);

-- Redeemed coupons per campaign and time from issue to redemption (seconds up to an hour,
-- whole minutes beyond: domain::summary::redemption_bucket).
create table redemption_time_summary (
    campaign_id  text not null,
    seconds      integer not null,
    shard        integer not null,
    coupons      integer not null,
    primary key (campaign_id, seconds, shard)
);

-- Points of live lots per quarter hour of expiry and (pending lots) of maturity;
-- 9223372036854775807 = never (or, for maturity, an available lot).
create table lot_summary (
    expires_quarter   integer not null,
    matures_quarter   integer not null,
    state             text not null check (state in ('pending', 'available')),
    shard             integer not null,
    remaining_points  integer not null,
    held_points       integer not null,
    primary key (expires_quarter, matures_quarter, state, shard)
);

-- A row here makes the server rebuild the summaries from the ledger when it starts (once):
-- a database that had a ledger before this migration.
create table summary_rebuilds (
    reason  text primary key
);
insert into summary_rebuilds (reason) values ('migration 0008 created the summaries');
