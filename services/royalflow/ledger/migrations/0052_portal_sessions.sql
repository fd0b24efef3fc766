-- 0052: browser sessions of the owner portal. An owner (or admin) exchanges its API token for a
-- session; only the SHA-256 of the random session id is stored (the id itself lives only in
-- the HttpOnly cookie), so a copy of this table cannot be replayed as cookies. A session is
-- valid while it has not ended, has not expired, and its token is not revoked (checked on every
-- request by joining api_tokens, so revoking a token ends its sessions at once).
CREATE TABLE portal_sessions (
    session_hash text PRIMARY KEY,
    token_id     bigint NOT NULL REFERENCES api_tokens (token_id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,              -- synchronizer token of this session's forms
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,                -- set by logout
    CHECK (expires_at > created_at)
);
CREATE INDEX portal_sessions_token ON portal_sessions (token_id);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at);
