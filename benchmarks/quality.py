#!/usr/bin/env python3
"""Attribution quality on the demo family: the issue #9 table, for exact and compositional mode.

    python benchmarks/quality.py [--per-class N] [--quick] [--plain-exact]

Trains (or takes from the cache) the demo family, its identical-owner variant and the
shell-company variants (owner-a as k = 2 and 3 shells, disjoint halves or duplicated data;
their clusters reuse the cached models, so they cost a few fine-tunes). Prints, per mode:
conditioned top-1 rate of the class holder and its mean share, the same from content only,
compositional-vs-exact top-owner agreement, the identical-owner gap, the manipulation gain of
each attack (with clusters, and without them in compositional mode; --plain-exact trains the
unclustered exact family of k = 2 disjoint shells too: 2^5 models, slow) and false merges. Writes
bench-results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from royalflow.attribution.registry import DiskFamilyRegistry
from royalflow.config import get_settings
from royalflow.training.digits import DEMO_HOLDINGS, digits_corpus, ensure_demo_family, train_family
from royalflow.training.quality import (
    derive_compositional, evaluate, generations, identical_owner_gap, manipulation_gain, shell_owners,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import print_table_and_save  # noqa: E402



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=30, help="generations per digit class (default 30: 300)")
    parser.add_argument("--quick", action="store_true", help="10 per class, k = 2 shells only")
    parser.add_argument("--plain-exact", action="store_true", help="also train unclustered exact attack families")
    args = parser.parse_args()
    per_class = 10 if args.quick else args.per_class
    root = Path(get_settings().families_dir)
    figures: dict[str, object] = {}
    started = time.perf_counter()
    family_id, version = ensure_demo_family(root)
    figures["family_ready_seconds"] = round(time.perf_counter() - started, 1)
    derive_compositional(root, family_id, version, "digits-compositional")
    registry = DiskFamilyRegistry(root, device=get_settings().device)
    exact, comp = registry.get(family_id, version), registry.get("digits-compositional", version)
    started = time.perf_counter()
    report = evaluate(exact, comp, DEMO_HOLDINGS, per_class=per_class, seed=11)
    figures["quality"] = report.__dict__
    figures["false_merges_demo"] = sum(len(c) - 1 for c in exact.clusters)

    public, owners = digits_corpus(DEMO_HOLDINGS)
    twins = {"owner-a": owners["owner-a"], "owner-a-twin": owners["owner-a"], "owner-c": owners["owner-c"]}
    train_family(root, "digits-twins", version, public, twins, mode="exact", progress=False)
    figures["identical_owner_gap"] = identical_owner_gap(registry.get("digits-twins", version), "owner-a", "owner-a-twin",
                                                         [0, 1, 2, 6], per_class=4, seed=2)

    items = generations(exact, list(range(10)), max(3, per_class // 2), seed=13)
    attacks = []
    for k in (2,) if args.quick else (2, 3):
        for duplicated in (False, True):
            name = f"digits-shells{k}-{'dup' if duplicated else 'split'}"
            variant = shell_owners(owners, "owner-a", k, duplicated=duplicated)
            row: dict[str, object] = {"k": k, "data": "duplicated" if duplicated else "disjoint"}
            plans = [("exact", True, exact), ("compositional", True, comp), ("compositional", False, comp)]
            if args.plain_exact and k == 2 and not duplicated:  # 2^5 models, most of them new: slow
                plans.append(("exact", False, exact))
            for mode, clusters, honest in plans:
                fid = f"{name}-{mode[:4]}{'' if clusters else '-plain'}"
                train_family(root, fid, version, public, variant, mode=mode, clusters=clusters, progress=False)
                got = manipulation_gain(honest, registry.get(fid, version), "owner-a", items, DEMO_HOLDINGS["owner-a"])
                row[f"{mode}{'' if clusters else '_plain'}"] = got.__dict__
            attacks.append(row)
            print(json.dumps(row), flush=True)
    figures["attacks"] = attacks
    figures["evaluation_seconds"] = round(time.perf_counter() - started, 1)
    print_table_and_save("quality", table(figures), figures)


def table(f: dict) -> str:  # type: ignore[type-arg]
    q = f["quality"]
    lines = [f"{'figure':<44}{'exact':>14}{'compositional':>16}",
             f"{'conditioned top-1 (holder)':<44}{q['top_owner_rate']:>14.1%}{q['compositional_top_owner_rate']:>16.1%}",
             f"{'conditioned mean holder share':<44}{q['holder_share']:>14.2f}{q['compositional_holder_share']:>16.2f}",
             f"{'content-only top-1':<44}{q['content_top_owner_rate']:>14.1%}{q['compositional_content_top_owner_rate']:>16.1%}",
             f"{'content-only mean holder share':<44}{q['content_holder_share']:>14.2f}{q['compositional_content_holder_share']:>16.2f}",
             f"{'compositional-vs-exact top-owner agreement':<44}{q['agreement_rate']:>30.1%}",
             f"{'identical-owner gap (max |share difference|)':<44}{f['identical_owner_gap']:>14.3f}",
             f"{'honest owners merged (demo family)':<44}{f['false_merges_demo']:>14d}"]
    for a in f["attacks"]:
        def fmt(key: str) -> str:
            r = a.get(key)
            return "-" if r is None else f"{r['gain']:.2f} ({r['gain_elsewhere']:.2f})"
        lines.append(f"{'gain k=%d %s: clustered; plain comp' % (a['k'], a['data']):<44}{fmt('exact'):>14}"
                     f"{fmt('compositional'):>16}  plain {fmt('compositional_plain')}"
                     + (f", plain exact {fmt('exact_plain')}" if a.get("exact_plain") else ""))
        merges = [r["false_merges"] for r in a.values() if isinstance(r, dict)]
        missed = [not r["merged"] for k, r in a.items() if isinstance(r, dict) and "plain" not in k]
        lines.append(f"{'  false merges / shells not merged':<44}{sum(merges):>14d}{sum(missed):>16d}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
