-- Check after 0001: the system accounts exist and no posting exists yet without its entry.
DO $$
BEGIN
    IF (SELECT count(*) FROM accounts WHERE account_type <> 'owner') <> 4 THEN
        RAISE EXCEPTION '0001 check: expected 4 system accounts';
    END IF;
END $$;
