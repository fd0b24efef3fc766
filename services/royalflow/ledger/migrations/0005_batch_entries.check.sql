-- Check after 0005: every journal entry still balances per currency (nothing was rewritten).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM postings GROUP BY entry_id, currency HAVING sum(amount) <> 0) THEN
        RAISE EXCEPTION '0005 check: an entry does not balance';
    END IF;
END $$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM contributions WHERE amount > 0 AND entry_id IS NULL) THEN
        RAISE EXCEPTION '0005 check: a paid contribution is not linked to its entry';
    END IF;
END $$;
