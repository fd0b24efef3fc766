-- Check after 0006: every applied reversal has a known outcome, every pending one none.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM reversals WHERE (applied_at IS NULL) <> (outcome IS NULL)) THEN
        RAISE EXCEPTION '0006 check: a reversal is applied without an outcome, or pending with one';
    END IF;
END $$;
