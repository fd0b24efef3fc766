"""Periodic reconciliation inside the ledger service: every ``reconcile_interval_seconds``
(0 = off) the checks of :mod:`royalflow.ledger.reconcile` run on one snapshot and update the
``royalflow_reconciliation_*`` gauges, so a broken book raises RoyalflowReconciliationFailing
and a reconciler that stopped running raises RoyalflowReconciliationStale.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from royalflow.config import Settings
from royalflow.ledger.reconcile import reconcile, record_run

log = logging.getLogger(__name__)

# A run on a huge book must not hold a snapshot (and vacuum) forever; the next run retries.
RUN_TIMEOUT_SECONDS = 600.0
PROBLEMS_LOGGED = 20  # per run: the full list is one `royalflow ledger reconcile` away


class Reconciler:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.interval_seconds = settings.reconcile_interval_seconds
        self.settings = settings
        self.runs = 0  # completed runs, for tests and logs

    async def run_once(self) -> list[str]:
        problems = await asyncio.wait_for(reconcile(self.pool, attribution_grace_seconds=self.settings.attribution_grace_seconds),
                                        RUN_TIMEOUT_SECONDS)
        self.runs += 1
        await record_run(self.pool, "ledger", problems)
        if problems:
            log.error("ledger: reconciliation found %d problem(s)", len(problems))
            for problem in problems[:PROBLEMS_LOGGED]:
                log.error("ledger: reconciliation: %s", problem)
        else:
            log.info("ledger: reconciliation ok")
        return problems

    async def run(self, stop: asyncio.Event) -> None:
        """First run one interval after start (the service's first batches come first), then
        every interval. A failed run is logged and retried at the next tick, never fatal."""
        if self.interval_seconds <= 0:
            log.info("ledger: periodic reconciliation off (reconcile_interval_seconds = 0)")
            return
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval_seconds)
                return
            except TimeoutError:
                pass
            try:
                await self.run_once()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                # The gauges keep their last run's timestamp, so the stale alert fires if this persists.
                log.warning("ledger: periodic reconciliation failed to run: %s", exc)
