-- SQLite flavour of migrations/postgres/0011_receipt_claims.sql (see there for why).

create table receipt_claims (
    store_id     text not null,
    register_id  text not null,
    receipt_no   text not null,
    order_id     text,
    receipt_id   text,
    primary key (store_id, register_id, receipt_no),
    check ((order_id is null) <> (receipt_id is null))
) without rowid;

-- The receipts held so far, as they were typed; sales first (rank 1).
create temp table typed_claims (
    store_id     text not null,
    register_id  text not null,
    receipt_no   text not null,
    order_id     text,
    receipt_id   text,
    rank         integer not null
);
insert into typed_claims
select store_id, register_id, receipt_no, order_id, null, 1
from orders
where receipt_no is not null;
insert into typed_claims
select store_id, register_id, receipt_no, null, receipt_id, 2
from receipts
where claims;

-- The key of domain::receipt::register_receipt_key: trimmed of white space (Rust's
-- char::is_whitespace, all 25 of them), ASCII letters in lower case (SQLite's lower() folds
-- ASCII only), then leading zeros stripped keeping one character.
update typed_claims
set register_id = lower(trim(register_id, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192,
        8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287,
        12288))),
    receipt_no = lower(trim(receipt_no, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192, 8193,
        8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288)));
update typed_claims
set register_id = case
        when ltrim(register_id, '0') = '' and register_id <> '' then '0'
        else ltrim(register_id, '0')
    end,
    receipt_no = case
        when ltrim(receipt_no, '0') = '' and receipt_no <> '' then '0'
        else ltrim(receipt_no, '0')
    end;

-- One holder a key: the first sale, else the first scan. A scan of a receipt a sale holds
-- keeps what it earned (the journal is not rewritten) but no longer holds the receipt.
insert or ignore into receipt_claims (store_id, register_id, receipt_no, order_id, receipt_id)
select store_id, register_id, receipt_no, order_id, receipt_id
from typed_claims
order by rank, rowid;
drop table typed_claims;

drop index receipts_claim_number;
drop index orders_receipt;
