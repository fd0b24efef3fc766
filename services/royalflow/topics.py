"""Every topic name the platform uses, in one table. Full names are ``<prefix>.<name>``
(:meth:`royalflow.config.Settings.topic`); retention and partitions live in
:data:`royalflow.platform.kafka.TOPICS`.

Who may write which topic (the compose stack's ACLs, README "Security"):

    GENERATIONS     producers
    CONTRIBUTIONS   the attribution agent only (signed records)
    ATTRIBUTIONS    the attribution agent only (signed audit records)
    CORRECTIONS     the admin path only (signed reversals)
    DEADLETTER      every consuming service
    GENERATION_CLAIMS  the attribution agent only (changelog of its table of claimed event ids)
    BALANCES        the ledger only
"""

from __future__ import annotations

GENERATIONS = "generations.v1"
CONTRIBUTIONS = "contributions.v1"
ATTRIBUTIONS = "attributions.v1"
CORRECTIONS = "corrections.v1"
DEADLETTER = "deadletter.v1"
BALANCES = "balances.v1"
GENERATION_CLAIMS = "generation-claims.v1"  # event id -> fingerprint of the first payload (attribution/claims.py)

ALL = (GENERATIONS, CONTRIBUTIONS, ATTRIBUTIONS, CORRECTIONS, DEADLETTER, BALANCES, GENERATION_CLAIMS)
