-- 0002: contributions (the ledger's idempotency keys), generation completeness, audit records,
-- and consumer offsets kept in the same transaction as the postings they produced.

CREATE TABLE contributions (
    contribution_id text PRIMARY KEY,        -- unique: a redelivery or replay inserts nothing
    ingest_seq      bigserial UNIQUE,        -- keyset cursor for pagination
    generation_id   text NOT NULL,
    owner_id        text NOT NULL,
    family_id       text NOT NULL,
    family_version  text NOT NULL,
    method          text NOT NULL,
    shapley_value   double precision NOT NULL,  -- nats; informational, amount is authoritative
    std_error       double precision NOT NULL,
    share           double precision NOT NULL,
    amount          bigint NOT NULL CHECK (amount >= 0),
    currency        char(3) NOT NULL,
    event_time      timestamptz NOT NULL,
    settled_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contributions_owner ON contributions (owner_id, ingest_seq);
CREATE INDEX contributions_generation ON contributions (generation_id);
CREATE INDEX contributions_family ON contributions (family_id, family_version);

CREATE TABLE generations (
    generation_id   text PRIMARY KEY,
    currency        char(3) NOT NULL,
    revenue_amount  bigint NOT NULL CHECK (revenue_amount >= 0),
    pool_amount     bigint NOT NULL CHECK (pool_amount >= 0 AND pool_amount <= revenue_amount),
    parts_total     integer NOT NULL CHECK (parts_total > 0),
    parts_received  integer NOT NULL DEFAULT 0,
    amount_received bigint NOT NULL DEFAULT 0,
    family_id       text NOT NULL,
    family_version  text NOT NULL,
    event_time      timestamptz NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,             -- set when all parts arrived and sum to the pool
    inconsistent    text                     -- why the parts disagree (NULL when fine)
);
CREATE INDEX generations_incomplete ON generations (first_seen_at) WHERE completed_at IS NULL;

CREATE TABLE attributions (
    generation_id  text PRIMARY KEY,
    family_id      text NOT NULL,
    family_version text NOT NULL,
    record         jsonb NOT NULL,           -- the full AttributionRecord: utilities, values, SEs, seed, content
    received_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
