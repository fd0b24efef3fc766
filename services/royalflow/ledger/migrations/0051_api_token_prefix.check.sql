DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM api_tokens WHERE token_prefix <> '' AND token_prefix NOT LIKE 'rf\_%') THEN
        RAISE EXCEPTION '0051 check: token prefixes start with rf_';
    END IF;
END $$;
