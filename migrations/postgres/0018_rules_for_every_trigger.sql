-- Every rule is a row of `rules` (GEO, VISIT and RECEIPT rules too; the rows of geo_rules,
-- visit_rules and receipt_rules are moved there by `omo serve` at start, see
-- Engine::adopt_legacy_rules). The issue rows of GEO and VISIT rules therefore no longer
-- reference geo_rules / visit_rules, like rule_counters they name a rule by id; and a firing
-- that gave points but no coupon has no coupon code.
alter table geo_issues drop constraint if exists geo_issues_rule_id_fkey;
alter table geo_issues alter column coupon_code drop not null;
alter table visit_issues drop constraint if exists visit_issues_rule_id_fkey;
alter table visit_issues alter column coupon_code drop not null;
