-- 0003: settlement periods and payouts, and the transactional outbox of balance changes.

CREATE TABLE periods (
    period_id  text PRIMARY KEY,             -- e.g. 2026-11-25T00:00:00Z/USD
    currency   char(3) NOT NULL,
    period_end timestamptz NOT NULL,
    closed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payouts (
    period_id        text NOT NULL REFERENCES periods (period_id),
    owner_id         text NOT NULL,
    currency         char(3) NOT NULL,
    amount           bigint NOT NULL CHECK (amount >= 0),  -- whole minor units, in asset units
    carried_forward  bigint NOT NULL CHECK (carried_forward >= 0),
    entry_id         bigint REFERENCES journal_entries (entry_id),
    PRIMARY KEY (period_id, owner_id)
);

CREATE TABLE outbox (
    outbox_id    bigserial PRIMARY KEY,
    owner_id     text NOT NULL,
    currency     char(3) NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (outbox_id) WHERE published_at IS NULL;
