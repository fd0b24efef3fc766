-- Check after 0002: every existing royalty entry has its contribution (none exist on a new ledger).
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM journal_entries e
        WHERE e.kind = 'royalty' AND NOT EXISTS (SELECT 1 FROM contributions c WHERE c.contribution_id = e.reference)
    ) THEN
        RAISE EXCEPTION '0002 check: royalty entries without contributions';
    END IF;
END $$;
