DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM portal_sessions WHERE length(session_hash) <> 64 OR length(csrf_token) < 32) THEN
        RAISE EXCEPTION '0052 check: session ids are stored as hex SHA-256, csrf tokens have at least 32 characters';
    END IF;
END $$;
