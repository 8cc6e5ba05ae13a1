-- Reliability (README, "Reliability"): tamper evidence for the journal, and the index that
-- idempotency retention purges by.
--
-- journal_seals is a hash chain over the journal, written by a background sealer in commit
-- order (never by the write path). Seal n covers the transaction ids in
-- (after_transaction_id, last_transaction_id]: it keeps each covered transaction's id and the
-- SHA-256 of its canonical form (transaction and postings, see src/domain/seal.rs), and its
-- hash covers the previous seal's hash, its range and those digests. `omo verify` recomputes
-- the chain and names the first transaction that no longer matches.
create table journal_seals (
    -- 1, 2, 3, ...: sealers on several replicas race for the next number; the primary key
    -- lets one win, and the loser rolls back and tries again later.
    seal_no               bigint primary key check (seal_no > 0),
    after_transaction_id  bigint not null unique, -- = the previous seal's last_transaction_id
    last_transaction_id   bigint not null,
    -- Per covered transaction, by id: its id (8 bytes, big-endian) and its SHA-256 (32 bytes).
    digests               bytea not null,
    prev_hash             text not null, -- hex; 64 zeros for seal 1
    hash                  text not null, -- hex SHA-256 over prev_hash, range and digests
    sealed_at             timestamptz not null,
    check (last_transaction_id > after_transaction_id)
);

-- The journal is append-only (DESIGN.md): a correction is a new transaction. These triggers
-- make PostgreSQL refuse what omo never does, so that an UPDATE, DELETE or TRUNCATE of the
-- journal, or of its seals, takes deliberately dropping a trigger first (and the seals still
-- show it to `omo verify`).
create function refuse_journal_change() returns trigger
language plpgsql as $$
begin
    raise exception 'the journal is append-only: % on % is refused', tg_op, tg_table_name;
end;
$$;

create trigger transactions_append_only
    before update or delete on transactions
    for each row execute function refuse_journal_change();
create trigger transactions_no_truncate
    before truncate on transactions
    for each statement execute function refuse_journal_change();

create trigger postings_append_only
    before update or delete on postings
    for each row execute function refuse_journal_change();
create trigger postings_no_truncate
    before truncate on postings
    for each statement execute function refuse_journal_change();

create trigger journal_seals_append_only
    before update or delete on journal_seals
    for each row execute function refuse_journal_change();
create trigger journal_seals_no_truncate
    before truncate on journal_seals
    for each statement execute function refuse_journal_change();

-- Idempotency retention (--idempotency-retention-days): the sweeper deletes records older
-- than the window, oldest first, in batches. BRIN, not a b-tree: records arrive in created_at
-- order, so a few bytes per range of pages find the old ones, and the hot path's insert of
-- each record adds no index entry of its own.
create index idempotency_keys_by_created_at on idempotency_keys using brin (created_at)
    with (autosummarize = on);
