#!/usr/bin/env python3
"""Attribution quality of the LoRA family kind (issue #10): the issue #9 table (benchmarks/quality.py)
on the tiny text-to-image pipeline and its three synthetic style owners (owner-red, -blue, -green).

    python benchmarks/lora_quality.py [--per-owner N] [--quick] [--out DIR [--keep]]

What it trains, from nothing, on CPU (one thread):
  * the tiny pipeline, pre-trained on 192 public pictures, and the honest exact family
    (3 owners, 8 adapters; 48 pictures per owner, clusters searched: none may be found); its
    compositional family is imported from the control and single-owner adapters (no training);
  * a twin family: owner-red, owner-twin (the SAME pictures as owner-red) and owner-blue (8 adapters);
  * unless --quick, the split attacks (training/lora_splits.py): owner-red as k = 2 or 3 shells
    holding disjoint parts of its pictures, all of them (duplicated), or near-copies of them
    (JPEG, resize, 1-pixel crop, noise), each with owner-blue and owner-green (2^(k+2) adapters),
    clusters found at training time; the compositional variant imported with public probes
    (its clusters from the probes and the adapters' draws), and imported again with the
    training's clusters, each valued through its members' merged adapter.
Every family shares the one base and the same public pictures. Measured on a 2-core shared
host: about 4 minutes for the base and the honest family, 1.5 for the twins (an earlier, quieter
run); a k = 2 shell family with its 5 seeds' attributions 11-27 minutes at load 5-15 (k = 3
trains 32 adapters: not timed); --quick about 7 minutes in all.

Generations: per owner, N "drawings" (text-to-image by the honest grand coalition with the
owner's caption, guidance 3) and N "edits" (img2img at strength 0.3 of held-out pictures in the
owner's style). Each is attributed with its caption (conditioned) and without (content only:
the empty prompt). Shares are max(phi, 0) / sum max(phi, 0).

Columns of the table (exact family | compositional family):
  conditioned top-1            the style owner has the largest share (ties miss), per kind
  conditioned mean share       the style owner's mean share, per kind
  content-only top-1 / share   the same generations without their prompt
  agreement                    compositional and exact give the same top owner
  identical-owner gap          mean (max) |share_red - share_twin| on owner-red's generations
  split gain k, data           the shells' summed mean share / owner-red's honest mean share on
                               owner-red's generations and on the others', with the clusters
                               found (quotient game): max over seeds, and [min-max] over seeds
                               (each seed its own --attack-per-owner drawings + edits per owner,
                               with the prompt); "plain" rows: the same without clusters
  honest owners merged         owner pairs in one cluster that are not shells of one source

Writes bench-results/lora_quality.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import print_table_and_save  # noqa: E402


def render(path: Path) -> None:
    """Print the table of a saved bench-results/lora_quality.json again."""
    import json

    print(table(json.loads(path.read_text())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-owner", type=int, default=24,
                        help="drawings and edits per style owner (default 24: 144 generations)")
    parser.add_argument("--quick", action="store_true", help="8 per owner, and skip the split attacks")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the split attacks' generations (default 5)")
    parser.add_argument("--attack-per-owner", type=int, default=4,
                        help="drawings and edits per owner and seed for the split attacks (default 4: 24 per seed)")
    parser.add_argument("--splits-only", action="store_true",
                        help="only the split attacks (the quality table and the twins are skipped)")
    parser.add_argument("--variants", default="2:disjoint,2:duplicated,2:near,3:disjoint,3:duplicated,3:near",
                        help="split attacks as k:data, comma-separated (data: disjoint, duplicated, near)")
    parser.add_argument("--out", type=Path, default=None, help="working folder for the families (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (a temp --out is removed otherwise)")
    args = parser.parse_args()

    import torch

    from royalflow.training.lora_quality import evaluate

    torch.set_num_threads(1)  # tiny models on a shared host: one thread is the fastest
    per_owner = 8 if args.quick else args.per_owner
    temp = None
    if args.out is None:
        temp = tempfile.TemporaryDirectory(prefix="lora-quality-")
        out = Path(temp.name)
    else:
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
    print(f"working folder {out}; {per_owner} drawings + {per_owner} edits per owner"
          f"{'' if not args.quick else '; quick: no split attacks'}", flush=True)
    started = time.perf_counter()
    try:
        variants = [(int(k), d) for k, d in (v.split(":") for v in args.variants.split(",") if v)]
        attacks = False if args.quick else {"seeds": tuple(range(1, args.seeds + 1)), "variants": variants,
                                            "per_owner": args.attack_per_owner}
        if args.splits_only:
            from royalflow.training.lora_splits import run_splits

            figures = run_splits(out, attacks or {}, log=lambda line: print(line, flush=True))
        else:
            figures = evaluate(out, per_owner=per_owner, attacks=attacks, log=lambda line: print(line, flush=True))
    finally:
        if temp is not None and not args.keep:
            temp.cleanup()
        elif temp is not None:
            print(f"kept {out}")
    figures["quick"] = args.quick
    figures["load_average"] = os.getloadavg()
    figures["total_seconds"] = round(time.perf_counter() - started, 1)
    print_table_and_save("lora_quality", table(figures), figures)


def table(f: dict) -> str:  # type: ignore[type-arg]
    if "quality" not in f:  # --splits-only
        return split_rows(f, [f"{'figure':<52}{'exact':>14}{'compositional':>16}"])
    q = f["quality"]
    lines = [f"{'figure (%d generations)' % f['generations']:<52}{'exact':>14}{'compositional':>16}"]
    for label, key, kind in (("conditioned top-1 (style owner)", "", "top1"),
                             ("conditioned mean style-owner share", "", "share"),
                             ("content-only top-1", "_content", "top1"),
                             ("content-only mean style-owner share", "_content", "share")):
        for gen in ("drawing", "edit", "all"):
            e, c = q[f"exact{key}"][gen][kind], q[f"compositional{key}"][gen][kind]
            cell = (lambda v: f"{v:.1%}") if kind == "top1" else (lambda v: f"{v:.2f}")
            name = f"{label}, {gen}s" if gen != "all" else f"{label}, all"
            lines.append(f"{name:<52}{cell(e):>14}{cell(c):>16}")
    a = f["agreement"]
    lines.append(f"{'compositional-vs-exact top-owner agreement (cond.)':<52}{a['conditioned']:>30.1%}")
    lines.append(f"{'compositional-vs-exact agreement (content only)':<52}{a['content_only']:>30.1%}")
    g = f["identical_owner_gap"]
    gap = f"{g['mean']:.3f} ({g['max']:.3f})"
    lines.append(f"{'identical-owner gap: mean (max) |share difference|':<52}{gap:>14}")
    return split_rows(f, lines)


def split_rows(f: dict, lines: list[str]) -> str:  # type: ignore[type-arg]
    splits = f.get("splits")
    if not splits:
        lines.append(f"{'split attacks':<52}{'not run (--quick)':>30}")
        return "\n".join(lines)
    lines.append(f"split gain: own (others') max over {len(splits['seeds'])} seeds [min-max own; min-max others]")
    for row in splits["variants"]:
        for way, label in (("quotient", "clusters"), ("plain", "plain, no clusters")):
            def fmt(mode: str) -> str:
                r = row[mode][way]
                return f"{r['own']['max']:.2f} ({r['others']['max']:.2f})"
            spans = "; ".join(f"{m[:4]} {row[m][way]['own']['min']:.2f}-{row[m][way]['own']['max']:.2f}, "
                              f"{row[m][way]['others']['min']:.2f}-{row[m][way]['others']['max']:.2f}"
                              for m in ("exact", "compositional"))
            name = f"gain k={row['k']} {row['data']} ({label})"
            lines.append(f"{name:<52}{fmt('exact'):>14}{fmt('compositional'):>16}  [{spans}]")
        for label, r in (("  compositional trained, cluster components", row["compositional_components"]["quotient"]),
                         ("  compositional imported, merged components", row["compositional_merged"]["quotient"]),
                         ("  compositional, import-only clusters", row["compositional"]["import"])):
            cell = f"{r['own']['max']:.2f} ({r['others']['max']:.2f})"
            span = f"[{r['own']['min']:.2f}-{r['own']['max']:.2f}, {r['others']['min']:.2f}-{r['others']['max']:.2f}]"
            lines.append(f"{label:<52}{'':>14}{cell:>16}  {span}")
        lines.append(f"{'  clusters found (training; import)':<52}  {row['clusters']}; {row['import_clusters']}")
    merged = splits["honest_family_false_merges"] + sum(r["false_merges"] + r["import_false_merges"]
                                                        + r.get("trained_compositional_false_merges", 0) for r in splits["variants"])
    lines.append(f"{'honest owners merged (all families, both evidences)':<52}{merged:>30}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
