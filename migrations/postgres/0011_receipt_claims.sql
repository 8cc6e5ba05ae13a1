-- One claim per register receipt, shared by register sales and scanned receipts (issue #21).
--
-- A register sale held its receipt through orders_receipt and a scan through
-- receipts_claim_number, each keyed as it was typed: "456" and "0456", or "r9" and "R9", were
-- two receipts, so one paper receipt earned twice; and a scan and a sale of one receipt in two
-- batches committing at once each checked the other's table, saw nothing, and both earned.
-- Now both hold the receipt by one row here, keyed as domain::receipt::register_receipt_key
-- names a receipt, so the second writer of a key hits the primary key, its batch runs again
-- and sees the first. The holder is the sale (order_id), or a scan (receipt_id) until the
-- register records the sale: the register is the truth, so its sale takes the row over (and
-- the scan's points are reversed in the journal). The row replaces both indexes (nothing reads
-- them any more), so a register sale writes a row here instead of an entry in orders_receipt;
-- receipts_claim_image still holds photographs.
create table receipt_claims (
    store_id     text not null,
    register_id  text not null,  -- trimmed, ASCII lower case, leading zeros stripped
    receipt_no   text not null,  -- the same
    order_id     text,           -- the register sale that holds the receipt, or
    receipt_id   text,           -- the scan that holds it until then
    primary key (store_id, register_id, receipt_no),
    check ((order_id is null) <> (receipt_id is null))
);

-- The receipts held so far, as they were typed; sales first (rank 1).
create temp table typed_claims on commit drop as
select store_id, register_id, receipt_no, order_id, null::text as receipt_id, 1 as rank,
    order_id as tie
from orders
where receipt_no is not null
union all
select store_id, register_id, receipt_no, null, receipt_id, 2, receipt_id
from receipts
where claims;

-- The key of domain::receipt::register_receipt_key: trimmed of white space (Rust's
-- char::is_whitespace, all 25 of them), ASCII letters in lower case (lower() under the "C"
-- collation folds ASCII only, as SQLite's does), then leading zeros stripped keeping one
-- character.
update typed_claims
set register_id = lower(btrim(register_id, E'\t\n\u000B\f\r \u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000') collate "C"),
    receipt_no = lower(btrim(receipt_no, E'\t\n\u000B\f\r \u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000') collate "C");
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
insert into receipt_claims (store_id, register_id, receipt_no, order_id, receipt_id)
select distinct on (store_id, register_id, receipt_no)
    store_id, register_id, receipt_no, order_id, receipt_id
from typed_claims
order by store_id, register_id, receipt_no, rank, tie;

drop index receipts_claim_number;
drop index orders_receipt;
