-- Reports (issue #11): what the ledger did not keep and ReportService needs.
--
-- The discount each coupon gave its order. Orders keep only the total of their coupons'
-- discounts, which cannot be split back per campaign when coupons are stacked; a campaign's
-- total_discount and a variant's discount per redemption are sums of this column over the
-- redeemed coupons. Set while a coupon is reserved or redeemed, null otherwise (a release or a
-- full refund clears it). Cost on the hot path: one more value in the coupon insert and update
-- a flush already writes; no index.
alter table coupons add column discount numeric(20, 4);
