-- 0050: bearer tokens of the balances API. Only the SHA-256 of a token is stored; tokens are
-- 256-bit random strings, so a plain hash is enough (no password stretching needed).
CREATE TABLE api_tokens (
    token_id   bigserial PRIMARY KEY,
    token_hash text NOT NULL UNIQUE,
    role       text NOT NULL CHECK (role IN ('owner', 'admin')),
    owner_id   text,
    label      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CHECK ((role = 'owner') = (owner_id IS NOT NULL))
);
