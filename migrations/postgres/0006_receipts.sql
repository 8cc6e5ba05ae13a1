-- Receipt scans: the rules that turn photographed receipts into points and coupons, and every
-- receipt submitted. The points a receipt earns are an ordinary lot and journal entry (pending
-- while the receipt waits for review); the coupons are ordinary coupons (source
-- receipt:<rule>). The rows below remember what the decisions need: which receipts are taken
-- (by number and by photograph, across all members) and the review queue.

-- Receipt rules (API ReceiptRule); `definition` is JSON of domain::receipt::ReceiptRule. The
-- campaign is not a column: a rule may issue no coupon.
create table receipt_rules (
    rule_id      text primary key,
    definition   jsonb not null,
    created_at   timestamptz not null
);

-- Every submission, accepted or not. `claims` says whether the receipt holds its number and
-- image (accepted, waiting for review, or rejected in review): the partial unique indexes make
-- a second claim of either a unique violation, whichever replica inserts it.
create table receipts (
    receipt_id    text primary key,
    member_id     text not null,
    store_id      text not null,
    register_id   text not null,
    receipt_no    text not null,
    image_sha256  text not null,
    issued_at     timestamptz not null,
    total         numeric(20, 4) not null,
    lines         jsonb not null,  -- JSON array of line items
    raw_text      text not null,
    status        text not null check (status in ('accepted', 'pending_review', 'rejected')),
    reason        text,            -- API reason; null when accepted at once
    points        bigint not null check (points >= 0),
    lot_id        bigint references point_lots (lot_id),
    rule_ids      jsonb not null,  -- JSON array
    coupon_codes  jsonb not null,  -- JSON array
    submitted_at  timestamptz not null,
    reviewed_at   timestamptz,
    review_note   text not null,
    claims        boolean not null
);
create unique index receipts_claim_number on receipts (store_id, register_id, receipt_no) where claims;
create unique index receipts_claim_image on receipts (image_sha256) where claims;
-- A member's history (newest first) and the daily limit's count.
create index receipts_by_member on receipts (member_id, submitted_at);
-- The review queue (oldest first) and the admin's lists by status.
create index receipts_by_status on receipts (status, submitted_at, receipt_id);

-- An accepted receipt from one of the stores is a visit like a sale or a dwell.
alter table visits drop constraint visits_source_check;
alter table visits add constraint visits_source_check check (source in ('sale', 'geo', 'receipt'));
