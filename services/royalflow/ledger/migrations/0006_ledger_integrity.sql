-- 0006: ledger integrity. A reversal keeps its original record bytes and where it came from, so
-- that a reversal refused later (its contribution never arrived within the bounded wait, or it
-- names another owner or currency than the contribution's) is dead-lettered with the very bytes
-- that were published, not a reconstruction. The payload digest tells an identical redelivery
-- (silent no-op) from a different payload under the same id (dead letter conflicting_duplicate).
-- Contributions need no digest: their stored columns and their generation's terms ARE the
-- payload, and are compared only when an id comes back (no cost on the hot path).

ALTER TABLE reversals
    ADD COLUMN payload_digest   bytea,    -- sha256 of the canonical record; NULL on rows from before 0006
    ADD COLUMN source_topic     text,
    ADD COLUMN source_partition integer,
    ADD COLUMN source_offset    bigint,
    ADD COLUMN original_key     bytea,
    ADD COLUMN original_value   bytea;

-- Outcomes a reversal can end with. unknown_contribution and mismatch move nothing and were
-- dead-lettered (applied_at then says when the ledger gave up on it).
ALTER TABLE reversals ADD CONSTRAINT reversals_outcome CHECK (
    outcome IS NULL OR outcome IN ('reversed', 'already_reversed', 'nothing_to_reverse', 'unknown_contribution', 'mismatch')
);

-- The expiry sweep reads pending reversals oldest first.
CREATE INDEX reversals_pending_since ON reversals (received_at) WHERE applied_at IS NULL;
