#!/usr/bin/env python3
"""Attribution quality of the LoRA family kind on natural photographs (issue #15): the issue #9
table (benchmarks/lora_quality.py) with owners who hold crops of different photographs.

    python benchmarks/photo_quality.py [--per-owner N] [--quick] [--out DIR] [--plan KEY=VALUE ...]

What it trains, on CPU (one thread), into --out (default bench-results/photo-quality, kept:
a second run reuses the base, the image folders and every finished adapter):
  * the tiny pipeline, pre-trained on 192 crops of 12 public sample photographs (scikit-image,
    scikit-learn and matplotlib ship them: nothing is downloaded), its VAE 1,000 steps
    (training.photo_quality.BUILD; a folder made with other settings is refused by name);
  * the exact family of 3 owners (8 adapters), each holding 48 crops of ONE photograph
    (skimage's chelsea, coffee and rocket), captioned like everyone else (a random pick of
    "a photo", "a picture", "an image": no owner information), with the drawn-shape harness's
    recipe (tiny.STYLE_PLAN); its compositional family is imported from it (no training);
  * unless --quick, a twin family: owner-cat, owner-cat-twin (the SAME crops) and owner-coffee.
--plan KEY=VALUE overrides the adapter recipe (training.lora.LoraPlan: steps, learning_rate,
rank, batch, samples, ...) and trains that family under its own id next to the default one.

Items, per owner: N held-out crops (cells of the photograph no training crop touched) and N
edits (other held-out crops re-drawn by the grand coalition, img2img at strength 0.3, guidance
3, with a generic prompt). Each is attributed with its generic prompt and without any prompt.

Columns (exact family | compositional family): as benchmarks/lora_quality.py, per item kind.
Writes bench-results/photo_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import RESULTS, print_table_and_save  # noqa: E402


def parse_plan(pairs: list[str]) -> dict[str, object]:
    plan: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--plan takes KEY=VALUE, got {pair!r}")
        plan[key] = json.loads(value)
    return plan


def plan_tag(plan: dict[str, object]) -> str:
    """A family-id suffix naming a recipe override: ``-public-mix-0p0`` for public_mix=0.0
    (family ids take lowercase letters, digits and '-' only)."""
    text = "".join(f"-{k}-{v}" for k, v in sorted(plan.items())).replace(".", "p").lower()
    return re.sub(r"[^a-z0-9-]", "-", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-owner", type=int, default=24, help="held-out crops and edits per owner (default 24: 144 items)")
    parser.add_argument("--quick", action="store_true", help="8 per owner, and no twin family")
    parser.add_argument("--out", type=Path, default=RESULTS / "photo-quality", help="working folder (kept; reused)")
    parser.add_argument("--plan", action="append", default=[], metavar="KEY=VALUE", help="adapter recipe override")
    args = parser.parse_args()

    import torch

    from royalflow.training.photo_quality import evaluate_photos

    torch.set_num_threads(1)  # tiny models on a shared host: one thread is the fastest
    plan = parse_plan(args.plan)
    per_owner = 8 if args.quick else args.per_owner
    family_id = "photos" + plan_tag(plan)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"working folder {args.out}; {per_owner} held-out crops + {per_owner} edits per owner; family {family_id}",
          flush=True)
    started = time.perf_counter()
    figures = evaluate_photos(args.out, per_owner=per_owner, build={"plan": plan}, twins=not args.quick,
                              family_id=family_id, log=lambda line: print(line, flush=True))
    figures.update(quick=args.quick, plan=plan, total_seconds=round(time.perf_counter() - started, 1))
    print_table_and_save("photo_quality", table(figures), figures)


def table(f: dict) -> str:  # type: ignore[type-arg]
    q = f["quality"]
    lines = [f"{'figure (%d items)' % f['generations']:<52}{'exact':>14}{'compositional':>16}"]
    for label, key, kind in (("with prompt: top-1 (style owner)", "", "top1"),
                             ("with prompt: mean style-owner share", "", "share"),
                             ("without prompt: top-1", "_content", "top1"),
                             ("without prompt: mean style-owner share", "_content", "share")):
        for gen in (*f["kinds"], "all"):
            e, c = q[f"exact{key}"][gen][kind], q[f"compositional{key}"][gen][kind]
            cell = (lambda v: f"{v:.1%}") if kind == "top1" else (lambda v: f"{v:.2f}")
            lines.append(f"{label + ', ' + gen:<52}{cell(e):>14}{cell(c):>16}")
    a = f["agreement"]
    lines.append(f"{'compositional-vs-exact top-owner agreement (prompt)':<52}{a['conditioned']:>30.1%}")
    lines.append(f"{'compositional-vs-exact agreement (no prompt)':<52}{a['content_only']:>30.1%}")
    g = f["identical_owner_gap"]
    gap = "not run (--quick)" if g is None else f"{g['mean']:.3f} ({g['max']:.3f})"
    lines.append(f"{'identical-owner gap: mean (max) |share difference|':<52}{gap:>14}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
