-- 0001: the double-entry journal.
-- Amounts are BIGINT in the currency's asset scale (USD: 1e-9). A posting's amount is signed:
-- positive credits the account (what the platform owes it grows), negative debits it.
-- Every journal entry's postings sum to zero per currency; entries are never updated or
-- deleted, corrections are new entries that reference what they correct.

CREATE TABLE accounts (
    account_id   text PRIMARY KEY,          -- owner:<id> | platform:revenue_share | unattributed | external:revenue | payouts:payable
    account_type text NOT NULL CHECK (account_type IN ('owner', 'platform', 'unattributed', 'external', 'payout')),
    owner_id     text
);

CREATE TABLE journal_entries (
    entry_id          bigserial PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('royalty', 'platform_share', 'reversal', 'payout')),
    reference         text NOT NULL UNIQUE,  -- idempotency key (contribution_id, platform:<generation>, ...)
    generation_id     text,
    corrects_entry_id bigint REFERENCES journal_entries (entry_id),
    event_time        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_entries_generation ON journal_entries (generation_id);

CREATE TABLE postings (
    posting_id bigserial PRIMARY KEY,
    entry_id   bigint NOT NULL REFERENCES journal_entries (entry_id),
    account_id text NOT NULL REFERENCES accounts (account_id),
    currency   char(3) NOT NULL,
    amount     bigint NOT NULL
);
CREATE INDEX postings_entry ON postings (entry_id);
CREATE INDEX postings_account ON postings (account_id, currency);

-- Balances are sharded: hot accounts (platform, external revenue) get one row per Kafka
-- partition, so concurrent ledger consumers never queue on one row lock. Balance = SUM(shards).
CREATE TABLE balances (
    account_id text NOT NULL REFERENCES accounts (account_id),
    currency   char(3) NOT NULL,
    shard      integer NOT NULL,
    amount     bigint NOT NULL,
    PRIMARY KEY (account_id, currency, shard)
);

-- Owner credits by event-time hour: rolling 1h/24h/7d/30d windows are sums over <= 720 rows,
-- and a late event lands in the hour it happened.
CREATE TABLE owner_hourly (
    account_id text NOT NULL,
    currency   char(3) NOT NULL,
    hour       timestamptz NOT NULL,
    amount     bigint NOT NULL,
    PRIMARY KEY (account_id, currency, hour)
);

INSERT INTO accounts (account_id, account_type, owner_id) VALUES
    ('platform:revenue_share', 'platform', NULL),
    ('unattributed', 'unattributed', '_unattributed'),  -- the reserved owner id of unearned pools
    ('external:revenue', 'external', NULL),
    ('payouts:payable', 'payout', NULL);
