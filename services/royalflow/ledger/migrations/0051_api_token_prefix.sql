-- 0051: a short public prefix of each API token ("rf_" + 8 characters, 48 of its 256 random
-- bits), so an operator can name a token to revoke it without ever seeing the secret again.
-- Tokens created before this migration have no prefix and are revoked by id.
ALTER TABLE api_tokens ADD COLUMN token_prefix text NOT NULL DEFAULT '';
CREATE INDEX api_tokens_prefix ON api_tokens (token_prefix) WHERE token_prefix <> '';
