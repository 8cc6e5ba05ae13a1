-- Members over their lifetime (issue #23, part 2). (Member attributes came with 0015.)

-- `omo import members`: which member each external record became. Written in the same
-- transaction as the member and its opening balance, so a re-run or a resumed run finds every
-- line already imported here and adds nothing twice; a killed run leaves whole chunks only.
create table member_imports (
    external_id  text primary key,
    member_id    text not null references members (member_id),
    -- The tier the old program had the member in (syntax checked, '' when none): kept until
    -- tiers exist in omo, to be applied then.
    tier_id      text not null,
    imported_at  timestamptz not null
);
