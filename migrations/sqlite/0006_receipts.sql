-- SQLite flavour of migrations/postgres/0006_receipts.sql: instants are INTEGER microseconds,
-- JSON TEXT, amounts TEXT.

create table receipt_rules (
    rule_id      text primary key,
    definition   text not null,
    created_at   integer not null
);

create table receipts (
    receipt_id    text primary key,
    member_id     text not null,
    store_id      text not null,
    register_id   text not null,
    receipt_no    text not null,
    image_sha256  text not null,
    issued_at     integer not null,
    total         text not null,
    lines         text not null,
    raw_text      text not null,
    status        text not null check (status in ('accepted', 'pending_review', 'rejected')),
    reason        text,
    points        integer not null check (points >= 0),
    lot_id        integer references point_lots (lot_id),
    rule_ids      text not null,
    coupon_codes  text not null,
    submitted_at  integer not null,
    reviewed_at   integer,
    review_note   text not null,
    claims        integer not null
);
create unique index receipts_claim_number on receipts (store_id, register_id, receipt_no) where claims;
create unique index receipts_claim_image on receipts (image_sha256) where claims;
create index receipts_by_member on receipts (member_id, submitted_at);
create index receipts_by_status on receipts (status, submitted_at, receipt_id);

-- An accepted receipt is a visit too. SQLite cannot change a CHECK: the table is rebuilt.
create table visits_with_receipts (
    member_id   text not null,
    store_id    text not null references stores (store_id),
    visit_date  text not null,
    first_at    integer not null,
    source      text not null check (source in ('sale', 'geo', 'receipt')),
    primary key (member_id, store_id, visit_date)
);
insert into visits_with_receipts select member_id, store_id, visit_date, first_at, source from visits;
drop table visits;
alter table visits_with_receipts rename to visits;
