DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM payouts WHERE amount < 0) THEN
        RAISE EXCEPTION '0003 check: negative payout';
    END IF;
END $$;
