-- The rules core (issue #20, domain::rules): every rule of the RuleService, its counters, and
-- what orders and lots need to book rule awards.

-- A rule as domain::rules::Rule (JSON); trigger and enabled as columns for ListRules' filter.
-- Its row is also the lock that decisions on a shared limit (a budget, a store's daily cap)
-- take, so those limits hold across writers and replicas.
create table rules (
    rule_id     text primary key,
    trigger     text not null,
    enabled     boolean not null,
    body        jsonb not null,
    created_at  timestamptz not null,
    updated_at  timestamptz not null
);

-- Per rule and member: how often it fired, when last, and what it gave (points net of
-- refunds, coupons). Written under the member's lock; GetRuleStats sums them, and omo verify
-- compares each rule's points with its postings.
create table rule_counters (
    rule_id        text not null,
    member_id      text not null,
    fired          bigint not null check (fired >= 0),
    points         bigint not null,
    coupons        bigint not null check (coupons >= 0),
    last_fired_at  timestamptz not null,
    primary key (rule_id, member_id)
);

-- Per rule, store and the store's local day: firings, for daily_cap_per_store. Written under
-- the rule's lock.
create table rule_store_days (
    rule_id     text not null,
    store_id    text not null,
    local_date  date not null,
    fired       bigint not null check (fired >= 0),
    primary key (rule_id, store_id, local_date)
);

-- What an order earns, part by part: [{rule_id ("" = the program's base rate), points,
-- reversed}]. Empty for orders from before: all of points_earned is the base.
alter table orders add column earn_breakdown jsonb not null default '[]';

-- Limited-time points: lots a rule (or an admin grant with its own expiry) made to expire
-- sooner than the program's points. Balance.limited_points sums them.
alter table point_lots add column limited boolean not null default false;
