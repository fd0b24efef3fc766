-- 0005: one journal entry per batch and currency instead of one per contribution.
-- A batch of N new contributions posts ONE royalty entry (one posting per owner account, the
-- sum of that owner's lines, and one debit of external:revenue) and at most one platform_share
-- entry (the revenue - pool of the generations first seen in the batch). Each contribution line
-- and each generation names the entry that carries it, so every amount is still traceable to
-- its posting, and reconciliation checks the lines sum to the postings exactly.
-- Entry ids are drawn from the sequence before the lines are written (no second UPDATE pass).

ALTER TABLE contributions ADD COLUMN entry_id bigint;          -- NULL for zero-amount lines
ALTER TABLE generations ADD COLUMN platform_entry_id bigint;   -- NULL when revenue = pool
ALTER TABLE journal_entries ADD COLUMN line_count integer;     -- contributions/generations it aggregates

-- Fewer indexes on the hottest table: reconciliation scans it whole anyway, and pagination
-- uses contributions_owner (owner_id, ingest_seq); the sequence alone keeps ingest_seq unique.
ALTER TABLE contributions DROP CONSTRAINT contributions_ingest_seq_key;
-- Withdrawals find a family's contributions through its generations (8x fewer rows to index).
DROP INDEX contributions_family;
CREATE INDEX generations_family ON generations (family_id, family_version);

-- Ledgers written before 0005 have one entry per contribution: link those too.
UPDATE contributions c SET entry_id = e.entry_id
FROM journal_entries e WHERE e.kind = 'royalty' AND e.reference = c.contribution_id;
UPDATE generations g SET platform_entry_id = e.entry_id
FROM journal_entries e WHERE e.kind = 'platform_share' AND e.reference = 'platform:' || g.generation_id;
