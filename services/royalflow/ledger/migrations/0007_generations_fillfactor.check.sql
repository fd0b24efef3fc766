-- Check after 0007: the setting is on the table.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'generations' AND 'fillfactor=70' = ANY(reloptions)) THEN
        RAISE EXCEPTION '0007 check: generations has no fillfactor of 70';
    END IF;
END $$;
