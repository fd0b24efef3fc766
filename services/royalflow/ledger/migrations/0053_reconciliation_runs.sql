-- 0053: the outcome of every reconciliation run (the ledger's periodic reconciler, the admin
-- API and the portal's "run now"), so the portal can show the last one and its problems without
-- running the checks on every page view. Problems are kept as the run returned them (at most
-- PROBLEM_LIMIT per check).
CREATE TABLE reconciliation_runs (
    run_id      bigserial PRIMARY KEY,
    source      text NOT NULL CHECK (source IN ('ledger', 'api', 'portal')),
    finished_at timestamptz NOT NULL DEFAULT now(),
    ok          boolean NOT NULL,
    problems    jsonb NOT NULL DEFAULT '[]'::jsonb,
    CHECK (ok = (jsonb_array_length(problems) = 0))
);
CREATE INDEX reconciliation_runs_finished ON reconciliation_runs (finished_at DESC);
