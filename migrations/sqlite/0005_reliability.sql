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
    -- 1, 2, 3, ...: two sealers racing for the next number: the primary key lets one win.
    seal_no               integer primary key check (seal_no > 0),
    after_transaction_id  integer not null unique, -- = the previous seal's last_transaction_id
    last_transaction_id   integer not null,
    -- Per covered transaction, by id: its id (8 bytes, big-endian) and its SHA-256 (32 bytes).
    digests               blob not null,
    prev_hash             text not null, -- hex; 64 zeros for seal 1
    hash                  text not null, -- hex SHA-256 over prev_hash, range and digests
    sealed_at             integer not null, -- microseconds since the epoch
    check (last_transaction_id > after_transaction_id)
);

-- The journal is append-only (DESIGN.md): a correction is a new transaction. Like the
-- PostgreSQL schema, SQLite refuses what omo never does, so that changing the journal or its
-- seals takes deliberately dropping a trigger first (and the seals still show it to
-- `omo verify`). SQLite has no TRUNCATE (its `delete from` without `where` fires these).
create trigger transactions_no_update before update on transactions
begin
    select raise(abort, 'the journal is append-only: update on transactions is refused');
end;
create trigger transactions_no_delete before delete on transactions
begin
    select raise(abort, 'the journal is append-only: delete on transactions is refused');
end;
create trigger postings_no_update before update on postings
begin
    select raise(abort, 'the journal is append-only: update on postings is refused');
end;
create trigger postings_no_delete before delete on postings
begin
    select raise(abort, 'the journal is append-only: delete on postings is refused');
end;
create trigger journal_seals_no_update before update on journal_seals
begin
    select raise(abort, 'the journal is append-only: update on journal_seals is refused');
end;
create trigger journal_seals_no_delete before delete on journal_seals
begin
    select raise(abort, 'the journal is append-only: delete on journal_seals is refused');
end;

-- Idempotency retention (--idempotency-retention-days): the sweeper deletes records older
-- than the window, oldest first, in batches, found by this index (SQLite has no BRIN; one
-- more index entry per record costs microseconds in-process).
create index idempotency_keys_by_created_at on idempotency_keys (created_at);
