#!/usr/bin/env python3
"""Ablation of the LoRA kind's estimator (issue #15, part 3) on the drawn-shape harness
(benchmarks/lora_quality.py) or the photo harness (benchmarks/photo_quality.py): the same
families and the same items, attributed under each estimator variant (whatever rule the
family's manifest holds: each variant sets the whole rule).

    python benchmarks/lora_ablation.py --harness drawn|photos [--per-owner N] [--variants A,B] [--plan KEY=VALUE]

Variants (names joined by "+"):
  uniform      K = 16 timesteps drawn independently and uniformly (the estimator before #15)
  stratified   the K timesteps stratified over the proposal's CDF (one per 1/K of its mass)
  proposal     q(s) ~ how much the single-owner adapters' ELBO terms differ from the control's
               at s (measured on the owners' training images), 10% uniform mixed in
  k<N>         K = N timesteps, e.g. k32, k128 (brute-force variance reduction, N/16 times the
               cost): how much of a harness's error is the estimator's noise
  snr<C>       v(S) counted down to SNR C (elbo.py (6): the ELBO's terms at abar/(1-abar) <= C
               only), e.g. snr1 (the rule new families are written with, with stratified), snr0.5
Families and items are cached under bench-results/ (the harness benchmarks' --out folders):
a family trained there by the harness benchmark is reused, and --plan trains another next to it.
Writes bench-results/lora_ablation_<harness>.json.
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
from benchmarks.photo_quality import parse_plan, plan_tag  # noqa: E402
from benchmarks.report import RESULTS, print_table_and_save  # noqa: E402

DEFAULT_VARIANTS = "uniform,stratified,proposal,proposal+stratified"
PROPOSAL_DRAWS = 16  # draws per timestep when measuring the proposal
MAX_SAMPLES = 1024  # K of a k<N> variant, at most (its cost grows with K)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--harness", choices=("drawn", "photos"), required=True)
    parser.add_argument("--per-owner", type=int, default=24, help="items of each kind per owner (default 24)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--plan", action="append", default=[], metavar="KEY=VALUE", help="adapter recipe override")
    args = parser.parse_args()

    import torch

    from royalflow.attribution.diffusion.elbo import ElboEstimator
    from royalflow.attribution.families.base import ddpm_scheduler
    from royalflow.attribution.families.latent import latent_term_differences, mixed_proposal
    from royalflow.training import lora_quality, photo_quality
    from royalflow.training.images import read_image_folders
    from royalflow.training.lora import concat, encode_set
    from royalflow.training.tiny import RESOLUTION, build_style_family

    torch.set_num_threads(1)
    plan = parse_plan(args.plan)
    tag = plan_tag(plan)
    started = time.perf_counter()
    if args.harness == "drawn":
        root, family_id, kinds = RESULTS / "lora-quality", "styles" + tag, lora_quality.KINDS
        built = build_style_family(root, family_id, "1", plan=plan)
    else:
        root, family_id, kinds = RESULTS / "photo-quality", "photos" + tag, photo_quality.KINDS
        built = photo_quality.build_photo_family(root, family_id, plan=plan)
    exact = lora_quality.load(built.family_path)
    comp = lora_quality.load(lora_quality.derive_compositional(root / "families", built.family_path,
                                                               f"{family_id}-compositional"))
    trained = time.perf_counter() - started
    items = (lora_quality.sample_generations(exact, args.per_owner) if args.harness == "drawn"
             else photo_quality.photo_items(exact, args.per_owner))
    print(f"[{time.perf_counter() - started:.0f}s] family {family_id} ready ({trained:.0f}s), {len(items)} items", flush=True)

    # The proposal: measured on the owners' training images, control vs single-owner adapters.
    _, owner_sets = read_image_folders(built.source, RESOLUTION)
    data = concat([encode_set(exact.base, owner_sets[o]) for o in exact.owners])
    clock = time.perf_counter()
    with torch.inference_mode():
        scale = latent_term_differences(exact.estimator, exact._batched, data.latents.cpu(), data.text.cpu(),  # noqa: SLF001
                                        [0, *[1 << i for i in range(len(exact.owners))]],
                                        draws_per_step=PROPOSAL_DRAWS, seed=0)
    proposal = mixed_proposal(scale)
    proposal_seconds = time.perf_counter() - clock
    print(f"proposal measured in {proposal_seconds:.1f}s; max q {max(proposal):.4f} at s = {proposal.index(max(proposal)) + 2}",
          flush=True)

    results: dict[str, dict] = {}  # type: ignore[type-arg]
    for variant in args.variants.split(","):
        parts = set(variant.split("+"))
        sizes = [int(p[1:]) for p in parts if p[:1] == "k" and p[1:].isdigit()]
        cuts = [p for p in parts if p.startswith("snr") and re.fullmatch(r"\d+(\.\d+)?", p[3:]) and float(p[3:]) > 0]
        unknown = parts - {"uniform", "stratified", "proposal"} - {f"k{k}" for k in sizes} - set(cuts)
        if unknown or len(sizes) > 1 or len(cuts) > 1 or any(not 2 <= k <= MAX_SAMPLES for k in sizes):
            raise SystemExit(f"unknown variant parts {sorted(unknown)}, or not one k<N> with N in 2..{MAX_SAMPLES}"
                             " and at most one snr<C> with C > 0")
        for family in (exact, comp):
            family.estimator = ElboEstimator(ddpm_scheduler(family.base.scheduler_config), levels=256,
                                             samples=sizes[0] if sizes else 16,
                                             proposal=proposal if "proposal" in parts else None,
                                             stratified="stratified" in parts,
                                             snr_cut=float(cuts[0][3:]) if cuts else None)
        clock = time.perf_counter()
        tables = {"exact": lora_quality.share_table(exact, items), "compositional": lora_quality.share_table(comp, items),
                  "exact_content": lora_quality.share_table(exact, items, content_only=True),
                  "compositional_content": lora_quality.share_table(comp, items, content_only=True)}
        results[variant] = {k: lora_quality.by_kind(t, exact.owners, items, kinds) for k, t in tables.items()}
        results[variant]["seconds"] = round(time.perf_counter() - clock, 1)
        print(f"[{time.perf_counter() - started:.0f}s] {variant}: {summary(results[variant], kinds)}", flush=True)
    figures = {"harness": args.harness, "family_id": family_id, "plan": plan, "items": len(items), "kinds": list(kinds),
               "proposal": proposal, "proposal_seconds": round(proposal_seconds, 1), "variants": results,
               "total_seconds": round(time.perf_counter() - started, 1)}
    print_table_and_save(f"lora_ablation_{args.harness}{tag}", table(figures), figures)


def summary(r: dict, kinds) -> str:  # type: ignore[no-untyped-def, type-arg]
    return " ".join(f"{t}:{r[t]['all']['top1']:.1%}/{r[t]['all']['share']:.2f}" for t in
                    ("exact", "compositional", "exact_content", "compositional_content"))


def table(f: dict) -> str:  # type: ignore[type-arg]
    cols = [(t, g) for t in ("exact", "compositional", "exact_content", "compositional_content") for g in (*f["kinds"], "all")]
    head = f"{'variant':<26}" + "".join(f"{(t.replace('compositional', 'comp').replace('_content', '-np') + ' ' + g)[:14]:>15}"
                                        for t, g in cols)
    lines = [f"{f['harness']} harness, family {f['family_id']}, {f['items']} items: top-1 (mean share)", head]
    for name, r in f["variants"].items():
        lines.append(f"{name:<26}" + "".join(f"{r[t][g]['top1']:>9.1%} {r[t][g]['share']:.2f}" for t, g in cols))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
