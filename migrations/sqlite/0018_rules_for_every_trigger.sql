-- Every rule is a row of `rules` (GEO, VISIT and RECEIPT rules too; the rows of geo_rules,
-- visit_rules and receipt_rules are moved there by `omo serve` at start, see
-- Engine::adopt_legacy_rules). The issue rows of GEO and VISIT rules therefore no longer
-- reference geo_rules / visit_rules, like rule_counters they name a rule by id; and a firing
-- that gave points but no coupon has no coupon code.
create table geo_issues_new (
    rule_id      text not null,
    member_id    text not null,
    store_id     text not null,
    issued_at    integer not null,
    local_date   text not null,
    slot         integer,
    coupon_code  text references coupons (code),
    primary key (rule_id, member_id, store_id, issued_at)
);
insert into geo_issues_new select rule_id, member_id, store_id, issued_at, local_date, slot, coupon_code from geo_issues;
drop table geo_issues;
alter table geo_issues_new rename to geo_issues;
create unique index geo_issues_daily_slots on geo_issues (rule_id, store_id, local_date, slot);

create table visit_issues_new (
    rule_id      text not null,
    member_id    text not null,
    issued_on    text not null,
    coupon_code  text references coupons (code),
    primary key (rule_id, member_id, issued_on)
);
insert into visit_issues_new select rule_id, member_id, issued_on, coupon_code from visit_issues;
drop table visit_issues;
alter table visit_issues_new rename to visit_issues;
