-- Retention (`omo serve --retention-days`, README "Security"): the sweeper deletes the location
-- reports recorded before the window and empties the raw text of the receipts submitted before
-- it (the receipt row and its ledger effects stay). Both run on every sweep, so each must find
-- its rows without reading the table:
-- - reports are appended in recorded_at order, so a block range index finds the old ones in a
--   few pages (as for the idempotency records, migration 0005);
-- - a partial index holds only the receipts that still have their text: a cleared receipt
--   leaves it, so a sweep with nothing to clear reads an empty range.
create index location_reports_by_recorded_at on location_reports using brin (recorded_at);
create index receipts_keeping_raw_text on receipts (submitted_at) where raw_text <> '';
