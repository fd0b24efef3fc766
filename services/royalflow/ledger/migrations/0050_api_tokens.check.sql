DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM api_tokens WHERE length(token_hash) <> 64) THEN
        RAISE EXCEPTION '0050 check: token hashes must be hex SHA-256';
    END IF;
END $$;
