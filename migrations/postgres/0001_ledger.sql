-- omo schema, PostgreSQL flavour: the same tables, columns, constraints and index names as
-- migrations/sqlite/0001_ledger.sql. Instants are timestamptz (microseconds, UTC); money is
-- numeric(20, 4) (Money allows at most 4 fractional digits); points are bigint whole points;
-- JSON documents are jsonb (validated on write, queryable by operators).
-- The journal (transactions, postings) is append-only: nothing updates or deletes its rows.
-- Several service replicas share this database: correctness comes from row locks and
-- constraints here, never from locks inside one process.

-- API keys: only the SHA-256 of a key is stored.
create table api_keys (
    key_id      text primary key,
    key_hash    text not null unique,
    role        text not null check (role in ('admin', 'checkout', 'register', 'app')),
    store_id    text,
    name        text not null,
    created_at  timestamptz not null
);

-- One remembered outcome per (api key, request_id): replays return it unchanged. Two replicas
-- racing on one request_id both try to insert; the loser's unique violation makes it retry and
-- replay the winner's outcome.
create table idempotency_keys (
    key_id       text not null,
    request_id   text not null,
    request_hash text not null,
    outcome      jsonb not null, -- JSON of Result<Reply, DomainError>
    created_at   timestamptz not null,
    primary key (key_id, request_id)
);

-- Program settings: a single row, JSON of domain::model::Program.
create table program (
    id    integer primary key check (id = 1),
    body  jsonb not null
);

create table stores (
    store_id           text primary key,
    name               text not null,
    latitude           double precision not null,
    longitude          double precision not null,
    time_zone          text not null,
    geofence_radius_m  double precision not null,
    geofence_polygon   jsonb not null, -- JSON array of {latitude, longitude}
    -- The port's Store carries no creation instant: the database records when it was written.
    created_at         timestamptz not null default now()
);

create table members (
    member_id                 text primary key,
    display_name              text not null,
    state                     text not null check (state in ('active', 'merged')),
    merged_into               text references members (member_id),
    created_at                timestamptz not null,
    lifetime_earned_points    bigint not null default 0,
    lifetime_redeemed_points  bigint not null default 0
);

-- (kind, value) names exactly one member: linking it elsewhere is IDENTIFIER_TAKEN.
create table identifiers (
    kind       text not null,
    value      text not null,
    member_id  text not null references members (member_id),
    primary key (kind, value)
);
create index identifiers_by_member on identifiers (member_id);

-- The journal.
create table transactions (
    transaction_id  bigint generated always as identity primary key,
    kind            text not null,
    member_id       text not null,
    occurred_at     timestamptz not null,
    recorded_at     timestamptz not null,
    channel         text,
    store_id        text not null,
    order_id        text not null,
    metadata        jsonb not null -- JSON object of strings
);
-- A member's history page is one backward range scan of this index (newest first, keyset
-- paging on transaction_id); its postings come by the postings primary key.
create index transactions_by_member on transactions (member_id, transaction_id);
create index transactions_by_order on transactions (order_id) where order_id <> '';

create table postings (
    transaction_id  bigint not null references transactions (transaction_id),
    posting_no      integer not null,
    from_account    text not null,
    to_account      text not null,
    asset           text not null,
    amount          bigint not null check (amount > 0),
    primary key (transaction_id, posting_no)
);

-- Stored balances of guarded accounts (member:*, member:*:pending, hold:*), written in the
-- same database transaction as the postings that change them. System accounts have no row:
-- their balances are summed from postings, so no request ever waits on `program:issued`.
-- The check is the last line of defence of "never below zero": a write that would break it
-- fails the whole unit of work.
create table balances (
    account  text not null,
    asset    text not null,
    balance  bigint not null check (balance >= 0),
    primary key (account, asset)
);

-- Point lots: points earned together, spent soonest expiry first.
create table point_lots (
    lot_id            bigint generated always as identity primary key,
    member_id         text not null,
    order_id          text not null,
    state             text not null check (state in ('pending', 'available', 'expired')),
    earned_at         timestamptz not null,
    matures_at        timestamptz,
    expires_at        timestamptz,
    original_points   bigint not null check (original_points > 0),
    remaining_points  bigint not null check (remaining_points >= 0),
    held_points       bigint not null check (held_points >= 0 and held_points <= remaining_points)
);
-- Spent lots drop out of these partial indexes, so they stay as small as the live lots and
-- the sweeper's due_work reads only what is due (one range scan per kind of work).
create index point_lots_live on point_lots (member_id, expires_at) where remaining_points > 0;
create index point_lots_due_expiry on point_lots (expires_at) where remaining_points > held_points;
create index point_lots_due_maturity on point_lots (matures_at) where state = 'pending';

create table orders (
    order_id          text primary key,
    member_id         text not null,
    state             text not null,
    channel           text not null,
    store_id          text not null,
    register_id       text not null,
    receipt_no        text, -- null unless a register sale: unique per store and register
    lines             jsonb not null, -- JSON array of line items
    total             numeric(20, 4) not null,
    coupon_discount   numeric(20, 4) not null,
    points_redeemed   bigint not null,
    amount_due        numeric(20, 4) not null,
    points_earned     bigint not null,
    points_pending    bigint not null,
    coupon_codes      jsonb not null, -- JSON array
    hold_expires_at   timestamptz,
    refunded_amount   numeric(20, 4) not null,
    points_reversed   bigint not null,
    points_restored   bigint not null,
    occurred_at       timestamptz not null,
    created_at        timestamptz not null
);
create unique index orders_receipt on orders (store_id, register_id, receipt_no)
    where receipt_no is not null;
create index orders_open_holds on orders (hold_expires_at) where state = 'authorized';
create index orders_by_member on orders (member_id, state);

-- Which lots an order's redeemed points came from (held while authorized).
create table order_lots (
    order_id         text not null,
    lot_id           bigint not null references point_lots (lot_id),
    points           bigint not null check (points > 0),
    restored_points  bigint not null default 0 check (restored_points between 0 and points),
    primary key (order_id, lot_id)
);

create table campaigns (
    campaign_id  text primary key,
    public_code  text unique,
    body         jsonb not null, -- JSON of domain::coupon::Campaign
    created_at   timestamptz not null
);

create table coupons (
    code         text primary key,
    campaign_id  text not null references campaigns (campaign_id),
    variant_id   text not null,
    member_id    text not null,
    state        text not null check (state in ('active', 'reserved', 'redeemed', 'expired', 'revoked')),
    valid_from   timestamptz not null,
    valid_until  timestamptz,
    source       text not null,
    order_id     text not null,
    redeemed_at  timestamptz,
    issued_at    timestamptz not null
);
create index coupons_by_member on coupons (member_id, campaign_id);
create index coupons_by_campaign on coupons (campaign_id);
create index coupons_by_order on coupons (order_id) where order_id <> '';
create index coupons_due_expiry on coupons (valid_until) where state = 'active';
