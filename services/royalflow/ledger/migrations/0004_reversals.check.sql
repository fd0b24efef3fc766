-- Check after 0004: every reversal entry references the royalty entry it corrects.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM journal_entries r LEFT JOIN journal_entries o ON o.entry_id = r.corrects_entry_id
        WHERE r.kind = 'reversal' AND (o.entry_id IS NULL OR o.kind <> 'royalty')
    ) THEN
        RAISE EXCEPTION '0004 check: reversal entries must reference a royalty entry';
    END IF;
END $$;
