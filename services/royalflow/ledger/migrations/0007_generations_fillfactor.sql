-- 0007: room on every page of generations for the row's next version.
-- A generation's parts are keyed by owner, so they reach the ledger over several partitions and
-- batches, and each batch updates the row (parts and amount received). With full pages every
-- update wrote its new version to another page and a new entry into each of the table's indexes;
-- with free space on the page, an update that changes no indexed column stays on the page (a HOT
-- update: no index entries). Pages written from now on keep 30% free; older pages are unchanged
-- until the table is rewritten (VACUUM FULL), which a migration must not do to a live ledger.
ALTER TABLE generations SET (fillfactor = 70);
