-- Member tiers (issue #23, domain::tier). A member's current tier is on its row, so reading a
-- member needs no other table: raised by the batch whose capture lifts spend over a threshold,
-- lowered only by the monthly review ('' = no tier).
alter table members add column tier_id text not null default '';
alter table members add column tier_since timestamptz;
-- When the monthly review (or a raise) last decided the tier (set with every tier): the sweeper
-- reviews a member once a month, so a refund mid-month never lowers a tier before the review;
-- the partial index finds the members due without reading those reviewed already.
alter table members add column tier_reviewed_at timestamptz;
create index members_by_tier_review on members (tier_reviewed_at) where tier_id <> '';

-- Rolling spend per member and month (the month's first day in the program's zone), a summary
-- written as deltas by the batch flush like the report summaries: a tier decision reads at most
-- a window of rows, and `omo verify` recomputes them from the orders. Money is integer
-- ten-thousandths (exact sums in SQL).
create table member_spend (
    member_id  text not null,
    month      date not null,
    spend_e4   bigint not null,
    primary key (member_id, month)
);
