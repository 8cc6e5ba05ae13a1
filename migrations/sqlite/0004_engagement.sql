-- SQLite flavour of migrations/postgres/0004_engagement.sql: instants are INTEGER microseconds,
-- dates TEXT "YYYY-MM-DD", JSON TEXT.
-- Engagement: geofence and visit rules, location reports, presence, visits, and the rows that
-- let the rules' limits (cooldowns, daily caps, one coupon per visit or lapse) be checked.
-- The coupons these rules issue are ordinary coupons in the ledger (source geo:<rule> or
-- visit:<rule>); the rows below only remember what the decisions need.

-- Geofence coupon rules (API GeoRule). `definition` is the whole rule as the engine reads it
-- (JSON of domain::location::GeoRule); the campaign is a column so that it is a real reference.
create table geo_rules (
    rule_id      text primary key,
    campaign_id  text not null references campaigns (campaign_id),
    definition   text not null,
    created_at   integer not null
);

-- Visit coupon rules (API VisitRule), likewise.
create table visit_rules (
    rule_id      text primary key,
    campaign_id  text not null references campaigns (campaign_id),
    kind         text not null check (kind in ('nth_visit', 'lapsed')),
    definition   text not null,
    created_at   integer not null
);

-- Every location report, accepted or not (`rejected` names the verdict's reason; null =
-- accepted). Append-only and narrow, without indexes: the highest-volume write of the service,
-- kept for audit and analysis, never read on a request's path.
create table location_reports (
    report_id    integer primary key,
    member_id    text not null,
    observed_at  integer not null,
    recorded_at  integer not null,
    latitude     real not null,
    longitude    real not null,
    accuracy_m   real not null,
    rejected     text check (rejected in ('ACCURACY', 'STALE', 'FUTURE', 'SPEED'))
);

-- Where each member was last seen: the last accepted fix (for the next report's speed check)
-- and the member's current visit run at each store they are inside (JSON array of
-- {store_id, run: {started_at, last_inside_at}}). One row per member, rewritten by each
-- accepted report: a run that ends simply leaves the array, with no row to delete.
create table member_presence (
    member_id    text primary key references members (member_id),
    latitude     real not null,
    longitude    real not null,
    accuracy_m   real not null,
    observed_at  integer not null,
    runs         text not null
);

-- One row per coupon a geo rule issued: the cooldown reads a member's last one at a store, the
-- daily cap counts a store's for the local date. `slot` numbers a capped rule's coupons at a
-- store within the day (1..cap): two replicas racing for the last slot collide on the unique
-- index instead of both issuing. Uncapped rules leave it null (nulls never collide).
create table geo_issues (
    rule_id      text not null references geo_rules (rule_id),
    member_id    text not null,
    store_id     text not null,
    issued_at    integer not null,
    local_date   text not null,
    slot         integer,
    coupon_code  text not null references coupons (code),
    primary key (rule_id, member_id, store_id, issued_at)
);
create unique index geo_issues_daily_slots on geo_issues (rule_id, store_id, local_date, slot);

-- Visits: one per (member, store, local date of the store), whatever the signal (a register
-- sale, a geofence dwell); the first signal's instant and kind are kept.
create table visits (
    member_id   text not null,
    store_id    text not null references stores (store_id),
    visit_date  text not null,
    first_at    integer not null,
    source      text not null check (source in ('sale', 'geo')),
    primary key (member_id, store_id, visit_date)
);

-- One row per coupon a visit rule issued, at most one a (rule, member, local date): the daily
-- LAPSED check may run on several replicas, and the second insert of a day is a unique
-- violation rather than a second coupon.
create table visit_issues (
    rule_id      text not null references visit_rules (rule_id),
    member_id    text not null,
    issued_on    text not null,
    coupon_code  text not null references coupons (code),
    primary key (rule_id, member_id, issued_on)
);
