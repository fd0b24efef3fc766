DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM reconciliation_runs WHERE jsonb_typeof(problems) <> 'array') THEN
        RAISE EXCEPTION '0053 check: problems must be a JSON array';
    END IF;
END $$;
