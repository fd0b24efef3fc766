-- 0004: reversal events (kind = reversal on contributions.v1 or corrections.v1).
-- A reversal names the contribution it corrects. It may arrive before that contribution (other
-- topic, other partition), so it waits here until the original is settled; then one
-- compensating journal entry (reference 'reversal:<corrected id>', unique, so a contribution is
-- reversed at most once, by an event or by `ledger withdraw-family`) moves the original credit
-- from the owner to the unattributed account. The generation's pool stays fully accounted for.

CREATE TABLE reversals (
    reversal_id  text PRIMARY KEY,           -- the reversal event's own contribution_id (idempotency key)
    corrects     text NOT NULL,              -- contribution_id being compensated
    owner_id     text NOT NULL,
    currency     char(3) NOT NULL,
    amount       bigint NOT NULL CHECK (amount >= 0),  -- as stated by the event; the posted amount is the original's
    event_time   timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    applied_at   timestamptz,                -- NULL while the corrected contribution has not arrived
    entry_id     bigint REFERENCES journal_entries (entry_id),  -- NULL when there was nothing to move
    outcome      text                        -- reversed | already_reversed | nothing_to_reverse
);
CREATE INDEX reversals_pending ON reversals (corrects) WHERE applied_at IS NULL;
CREATE INDEX journal_entries_corrects ON journal_entries (corrects_entry_id) WHERE corrects_entry_id IS NOT NULL;
