#!/usr/bin/env python3
"""Content-only attribution of the demo digits family (issue #15's target: the class holder
tops >= 90% of generations attributed WITHOUT their label, on independent draws of 100).

    python benchmarks/content_only.py [--draws 11,12,13] [--per-class 10] [--timesteps independent|stratified|manifest]
                                      [--snr-cut C]

Per draw (a sampling seed): 10 generations of every digit class by the exact demo family's
grand coalition, attributed without their label (the family's content-only rule), exact mode.
--timesteps overrides how the estimator draws its K timesteps (default: the manifest's rule),
so one cached family measures both. --snr-cut C values every coalition by the rate down to SNR C
(attribution/diffusion/elbo.py (6), the LoRA kind's rule) instead of the full bound, and also
reports the conditioned top-1 (the same generations WITH their label), since the cut changes
both. Writes bench-results/content_only.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import print_table_and_save  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", default="11,12,13", help="sampling seeds, one draw each (default 11,12,13)")
    parser.add_argument("--per-class", type=int, default=10, help="generations per class and draw (default 10: 100)")
    parser.add_argument("--timesteps", choices=("independent", "stratified", "manifest"), default="manifest")
    parser.add_argument("--snr-cut", type=float, default=None, help="value v(S) down to this SNR (default: the full bound)")
    args = parser.parse_args()
    if args.snr_cut is not None and not args.snr_cut > 0:
        parser.error("--snr-cut must be positive")

    from royalflow.attribution.registry import DiskFamilyRegistry
    from royalflow.config import get_settings
    from royalflow.training.digits import DEMO_HOLDINGS, ensure_demo_family
    from royalflow.training.quality import content_only, generations, holder_stats

    root = Path(get_settings().families_dir)
    family_id, version = ensure_demo_family(root)
    family = DiskFamilyRegistry(root, device=get_settings().device).get(family_id, version)
    if args.timesteps != "manifest":  # the same proposal and K; only how the K timesteps are drawn
        family.estimator.stratified = args.timesteps == "stratified"
    if args.snr_cut is not None:  # the same proposal, K and timestep rule, with the cut (6)
        from royalflow.attribution.diffusion.elbo import ElboEstimator
        from royalflow.attribution.diffusion.unet import build_scheduler

        old = family.estimator
        family.estimator = ElboEstimator(build_scheduler(family.manifest["scheduler"]), levels=old.levels, samples=old.samples,
                                         proposal=[float(q) for q in old.proposal], stratified=old.stratified,
                                         snr_cut=args.snr_cut)
    holder = {c: owner for owner, classes in DEMO_HOLDINGS.items() for c in classes}
    rows = []
    for seed in (int(s) for s in args.draws.split(",")):
        clock = time.perf_counter()
        items = generations(family, sorted(holder), args.per_class, seed=seed)
        classes = [int(p.item[1]) for p in items]
        top1, share, _ = holder_stats(family, content_only(items, family), classes, holder)
        rows.append({"seed": seed, "items": len(items), "top1": top1, "share": share,
                     "seconds": round(time.perf_counter() - clock, 1)})
        if args.snr_cut is not None:
            rows[-1]["conditioned_top1"], rows[-1]["conditioned_share"], _ = holder_stats(family, items, classes, holder)
        print(rows[-1], flush=True)
    figures = {"timesteps": args.timesteps if args.timesteps != "manifest" else
               ("stratified" if family.estimator.stratified else "independent"), "snr_cut": args.snr_cut,
               "draws": rows}
    cut = "" if args.snr_cut is None else f", down to SNR {args.snr_cut:g}"
    text = "\n".join([f"content-only, exact, timesteps {figures['timesteps']}{cut}: draw  top-1  mean share"]
                     + [f"  seed {r['seed']:>4} ({r['items']} items)  {r['top1']:6.1%}  {r['share']:.2f}"
                        + (f"   conditioned {r['conditioned_top1']:6.1%}  {r['conditioned_share']:.2f}"
                           if "conditioned_top1" in r else "") for r in rows])
    print_table_and_save("content_only", text, figures)


if __name__ == "__main__":
    main()
