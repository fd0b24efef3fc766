"""The quotient game: Shapley values over clusters of owners, split within a cluster by data size.

Given a partition of the n owners into k clusters C_1..C_k (evidence-backed same-source
groups, see training/clusters.py), the quotient game has the clusters as players:

    v_q(T) = v( union_{j in T} C_j )        for T subset of {1..k}                       (1)
    phi_i  = phi_q(C(i)) * w_i / sum_{l in C(i)} w_l                                        (2)

where C(i) is owner i's cluster and w its data sizes. (2) sums to phi_q over each cluster,
so efficiency holds: sum_i phi_i = v(N) - v(∅). An owner who splits its data over shells
forms one cluster with them: the cluster is valued as the honest owner was, and splitting
cannot raise the total ("Quotient Semivalues for False-Name-Resistant Data Attribution").
With every owner its own cluster, (1)-(2) are the plain Shapley values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from royalflow.errors import AttributionError


def membership(owners: Sequence[str], clusters: Sequence[Sequence[str]] | None) -> np.ndarray:
    """(k, n) bool: row j marks the owners of cluster j. Every owner must be in exactly one
    cluster (a manifest that says otherwise is refused, never patched)."""
    names = list(owners)
    groups = [list(c) for c in clusters] if clusters else [[o] for o in names]
    members = np.zeros((len(groups), len(names)), dtype=bool)
    for j, group in enumerate(groups):
        for owner in group:
            if owner not in names:
                raise AttributionError(f"cluster member {owner!r} is not an owner of the family")
            members[j, names.index(owner)] = True
    if not np.array_equal(members.sum(axis=0), np.ones(len(names), dtype=int)) or not members.any(axis=1).all():
        raise AttributionError("clusters must partition the owners (each owner in exactly one, none empty)")
    return members


def quotient_masks(members: np.ndarray) -> np.ndarray:
    """Owner bitmask of every quotient coalition T (index = cluster bitmask), shape (2^k,)."""
    k, n = members.shape
    cluster_mask = (members.astype(np.int64) << np.arange(n, dtype=np.int64)).sum(axis=1)
    t = np.arange(1 << k, dtype=np.int64)
    return ((t[:, None] >> np.arange(k)) & 1) @ cluster_mask


def split_matrix(members: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(n, k) with phi_owners = S @ phi_clusters: (2), data-size weights within each cluster."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.shape != (members.shape[1],) or np.any(sizes <= 0):
        raise AttributionError("data sizes must be positive, one per owner")
    weights = members * sizes[None, :]
    return (weights / weights.sum(axis=1, keepdims=True)).T


def quotient_coalitions(members: np.ndarray, coalitions: np.ndarray) -> np.ndarray:
    """Cluster coalitions (m, k) bool -> owner coalitions (m, n) bool, for a callable utility."""
    return (coalitions.astype(np.int64) @ members.astype(np.int64)) > 0
