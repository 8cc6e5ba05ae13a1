-- Retention (`omo serve --retention-days`, README "Security"): the sweeper deletes the location
-- reports recorded before the window and empties the raw text of the receipts submitted before
-- it (the receipt row and its ledger effects stay). Both run on every sweep, so each must find
-- its rows without reading the table; a partial index holds only the receipts that still have
-- their text, so a cleared receipt leaves it.
create index location_reports_by_recorded_at on location_reports (recorded_at);
create index receipts_keeping_raw_text on receipts (submitted_at) where raw_text <> '';
