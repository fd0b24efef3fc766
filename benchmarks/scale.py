#!/usr/bin/env python3
"""Attribution at catalogue scale: screen + refine (the agent's path for compositional LoRA
families of 16 owners and more) against the full compositional path, on the tiny pipeline.

    python benchmarks/scale.py [--quick] [--cache DIR] [--events N] [--skip-accuracy]

Cost (synthetic adapters: the cost of a forward does not depend on what an adapter learned),
n in {16, 64, 256, 1024}: attributions/s of the screened path and of the full path, UNet
passes per attribution (a backward counted as two), peak RSS of the process and the time of
one Shapley computation over the mixture utility.

Accuracy (trained adapters): a compositional family of 64 owners with pairwise distinct
styles (``training.styles.catalogue``), trained once into --cache (about 15 min on 2 cores;
kept for later runs). n = 16 is its control and first 16 owners, n = 64 all of them. Events are
held-out pictures of every owner's style (never trained on), with their style's caption and
without a prompt. Reported: the same top owner in both paths, the mean L1 distance between
share vectors, the style owner's top-1 rate and mean share in each path. n = 1,024: the 64
trained owners plus 960 synthetic distractors with the trained adapters' norms, on --events
events (default 50; the full path costs 1,025 x (K+1) UNet rows per event).

The full path is itself a Monte-Carlo estimate (K timesteps per owner), so the accuracy rows
also report its noise floor (--noise-seeds, default 2; n = 16 and 64): the full path again on
the same events with other seeds (event seed + 1, + 2), and how often two of its seeds agree on
the top owner and their L1 distance; then each path against an independent reference, the
mixture over the other seeds' mean component likelihoods (K x seeds timesteps). A screen can
be no closer to the truth than the full path on the same draws; "vs reference" shows how much
of the full path's accuracy it keeps.

Writes bench-results/scale.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lora import batch_of, make_family, peak_bytes, reset_peak  # noqa: E402  (the LoRA benchmark's helpers)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench-results" / "scale.json"
SAMPLES_K = 16  # as the families' default
BATCH = 8
SENSITIVITY_NATS = (0.25, 0.5, 1.0, 2.0)  # errors tried on the full path's likelihoods


def shares(values: np.ndarray) -> np.ndarray:
    positive = np.clip(values, 0, None)
    return positive / positive.sum() if positive.sum() > 0 else positive


def cost_rows(ns: list[int], full_max: int, device: torch.device, base: Path) -> list[dict]:  # type: ignore[type-arg]
    from royalflow.shapley import mixture_shapley

    rows = []
    for n in ns:
        family = make_family(base, n, "compositional", device, SAMPLES_K)
        batch = batch_of(family, BATCH)
        family.attribute(batch[:2])  # warm-up: prompt cache, resident pool
        reset_peak()
        started = time.perf_counter()
        out = family.attribute(batch, path="screen")
        screened_s = time.perf_counter() - started
        row = {"n": n, "screened_attributions_per_second": BATCH / screened_s,
               "screened_unet_passes": float(np.mean([a.model_evaluations for a in out])),
               "screened_refined_mean": float(np.mean([len(a.screen["refined"]) for a in out])),
               "peak_rss_bytes": peak_bytes(device), "full_unet_passes": (n + 1) * (SAMPLES_K + 1)}
        if n <= full_max:
            count = BATCH if n <= 64 else 1
            started = time.perf_counter()
            family.attribute(batch[:count], path="full")
            row["full_attributions_per_second"] = count / (time.perf_counter() - started)
            row["speedup"] = row["screened_attributions_per_second"] / row["full_attributions_per_second"]
        ll = np.array(list(out[0].coalition_utilities.values()))
        started = time.perf_counter()
        for _ in range(5):
            mixture_shapley(family.log_weights, ll)
        row["shapley_seconds"] = (time.perf_counter() - started) / 5
        rows.append(row)
        print(f"n={n:>5}  screened {row['screened_attributions_per_second']:6.2f}/s  "
              f"passes {row['screened_unet_passes']:7.1f} (full {row['full_unet_passes']})  "
              f"refined {row['screened_refined_mean']:.2f}  full {row.get('full_attributions_per_second', float('nan')):6.2f}/s  "
              f"x{row.get('speedup', float('nan')):5.1f}  peak RSS {row['peak_rss_bytes'] / 2**30:.2f} GiB  "
              f"Shapley {row['shapley_seconds'] * 1000:.1f} ms", flush=True)
        family.bank.close()
        del family
    return rows


def trained_catalogue(cache: Path) -> Path:
    """The 64-owner compositional family, trained once (resumable) into ``cache``."""
    from royalflow.training.styles import catalogue
    from royalflow.training.tiny import build_style_family

    done = cache / "families" / "cat64" / "1"
    if (done / "manifest.json").is_file():  # written last, after every adapter (no cluster step: see below)
        print(f"reusing the 64-owner catalogue family under {cache}", flush=True)
        return done
    print(f"training the 64-owner catalogue family under {cache} (about 15 min on 2 cores) ...", flush=True)
    # No split-defence evidence: the benchmark values every owner as its own player (family_from),
    # and the all-pairs cross-fit of 64 owners alone took 10 min.
    built = build_style_family(cache, "cat64", "1", styles=catalogue(64), mode="compositional", per_owner=32, public=192,
                                clusters=False)
    return built.family_path


def family_from(path: Path, owners: int, device: torch.device, distractors: int = 0):  # type: ignore[no-untyped-def]
    """A compositional LoraFamily over the first ``owners`` trained owners (+ random distractors
    whose factors have the trained adapters' mean norms)."""
    from royalflow.attribution.families.adapters import linear_shapes, read_factors
    from royalflow.attribution.families.base import load_base
    from royalflow.attribution.families.lora import LoraFamily, base_folder
    from royalflow.attribution.families.manifest import LoraManifest
    from royalflow.training.tiny import random_factors

    manifest = LoraManifest.model_validate(json.loads((path / "manifest.json").read_text()))
    base = load_base(base_folder(manifest, path), device=device)
    shapes = linear_shapes(base.unet)
    files = manifest.slot_files()[: owners + 1]
    factors = [read_factors(path / f.file, expected=shapes) for f in files]
    names = list(manifest.owners[:owners])
    if distractors:
        fake = random_factors(base.unet, distractors, seed=7)
        for layer in fake[0]:
            a_norm = np.mean([float(f[layer][0].norm()) for f in factors[1:]])
            b_norm = np.mean([float(f[layer][1].norm()) for f in factors[1:]])
            for f in fake:
                f[layer] = (f[layer][0] * a_norm / float(f[layer][0].norm()), f[layer][1] * b_norm / float(f[layer][1].norm()))
        factors += fake
        names += [f"distractor-{i:04d}" for i in range(distractors)]
    sizes = {"_base": manifest.data_sizes["_base"], **{o: manifest.data_sizes.get(o, 32) for o in names}}
    document = {"kind": "lora", "family_id": f"cat{len(names)}", "version": "1", "owners": names, "pool_fraction": "3/10",
                "mode": "compositional", "base": str(base_folder(manifest, path)), "resolution": manifest.resolution,
                "rank": manifest.rank, "target_modules": manifest.target_modules,
                "components": {key: {"file": f"components/{i:05d}.safetensors", "sha256": "0" * 64}
                               for i, key in enumerate(["_control", *names])},
                "data_sizes": sizes, "estimator": {"samples": SAMPLES_K, "screen": {"min_owners": 1}}}
    return LoraFamily(LoraManifest.model_validate(document), base, device, factors)


def held_out(family, owners: int, per_owner: int, seed: int = 999):  # type: ignore[no-untyped-def]
    """Held-out pictures of the first ``owners`` styles: (prepared event, style owner index, prompted)."""
    from royalflow.attribution.families.content import png
    from royalflow.producer.events import generation_event
    from royalflow.training.styles import catalogue, owner_image

    styles = catalogue(64)
    rng = np.random.default_rng(seed)
    out = []
    for i, owner in enumerate(list(styles)[:owners]):
        for j in range(per_owner):
            pixels = np.asarray(owner_image(owner, rng, styles))
            prompt = styles[owner][3] if j % 2 == 0 else None
            event = generation_event(event_id=f"held-{owner}-{j}", family_id=family.family_id, family_version="1",
                                     revenue_amount=1000, currency="USD", content=png(pixels), prompt=prompt)
            out.append((family.prepare(event), i, prompt is not None))
    return out


def run(family, prepared: list, path: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    """Attributions of ``prepared`` events on ``path`` ("screen" or "full"), in batches."""
    return [a for i in range(0, len(prepared), BATCH) for a in family.attribute(prepared[i:i + BATCH], path=path)]


def mixture_shares(family, likelihoods: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Share vectors (E, n) from component likelihoods (E, n+1), as the full path values them."""
    from royalflow.attribution.families.valuation import EXACT_SHAPLEY_MAX_OWNERS
    from royalflow.shapley import mixture_shapley

    return np.stack([shares(mixture_shapley(family.log_weights, m, exact_max_players=EXACT_SHAPLEY_MAX_OWNERS).values)
                     for m in likelihoods])


def agree(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Share vectors (E, n): how often the top owner is the same, and the mean L1 distance."""
    return float(np.mean(a.argmax(1) == b.argmax(1))), float(np.abs(a - b).sum(1).mean())


def noise_floor(family, prepared: list, s_sh: np.ndarray, f_sh: np.ndarray, full: list,  # type: ignore[no-untyped-def,type-arg]
                seeds: int) -> dict:  # type: ignore[type-arg]
    """The full path on ``seeds`` other seeds of the same events: its seed-to-seed agreement, and
    both paths (their shares ``s_sh``, ``f_sh``) against the reference (the mixture over the
    other seeds' mean likelihoods)."""
    others = [run(family, [dataclasses.replace(p, seed=p.seed + s) for p in prepared], "full") for s in range(1, seeds + 1)]
    ref = mixture_shares(family, np.mean([[list(a.coalition_utilities.values()) for a in other] for other in others], axis=0))
    o_sh = np.stack([shares(a.shapley_values) for a in others[0]])

    out = {"noise_seeds": seeds}
    # How exact a screen must be: the full path's own likelihoods with N(0, sigma) nats added.
    own = np.array([list(a.coalition_utilities.values()) for a in full])  # (E, n+1)
    rng = np.random.default_rng(0)
    for sigma in SENSITIVITY_NATS:
        moved = own + np.concatenate([np.zeros((len(own), 1)), rng.normal(0.0, sigma, (len(own), own.shape[1] - 1))], axis=1)
        same, l1 = agree(mixture_shares(family, moved), f_sh)
        out[f"full_moved_{sigma}_nats_same_top"], out[f"full_moved_{sigma}_nats_mean_l1"] = same, l1
    print(f"{'':>22}  the full path with N(0, sigma) nats on every owner's likelihood, against itself: " + ", ".join(
        f"{sigma} nats: same top {out[f'full_moved_{sigma}_nats_same_top']:.1%}, L1 {out[f'full_moved_{sigma}_nats_mean_l1']:.3f}"
        for sigma in SENSITIVITY_NATS), flush=True)
    for key, (a, b) in {"full_vs_other_seed": (f_sh, o_sh), "full_vs_reference": (f_sh, ref),
                        "screened_vs_reference": (s_sh, ref)}.items():
        out[f"{key}_same_top"], out[f"{key}_mean_l1"] = agree(a, b)
    print(f"{'':>22}  noise floor: the full path's two seeds: same top {out['full_vs_other_seed_same_top']:.1%}, "
          f"L1 {out['full_vs_other_seed_mean_l1']:.3f}; against the reference ({seeds} other seeds): "
          f"full {out['full_vs_reference_same_top']:.1%} / {out['full_vs_reference_mean_l1']:.3f}, "
          f"screened {out['screened_vs_reference_same_top']:.1%} / {out['screened_vs_reference_mean_l1']:.3f}", flush=True)
    return out


def accuracy_row(family, events, label: str, noise_seeds: int = 0) -> dict:  # type: ignore[no-untyped-def,type-arg]
    prepared = [p for p, _, _ in events]
    started = time.perf_counter()
    screened = run(family, prepared, "screen")
    screened_s = time.perf_counter() - started
    started = time.perf_counter()
    full = run(family, prepared, "full")
    full_s = time.perf_counter() - started
    s_sh = np.stack([shares(a.shapley_values) for a in screened])
    f_sh = np.stack([shares(a.shapley_values) for a in full])
    owner = np.array([o for _, o, _ in events])
    row = {"family": label, "events": len(events), "same_top": float(np.mean(s_sh.argmax(1) == f_sh.argmax(1))),
           "mean_l1": float(np.abs(s_sh - f_sh).sum(1).mean()),
           "style_top1_screened": float(np.mean(s_sh.argmax(1) == owner)),
           "style_top1_full": float(np.mean(f_sh.argmax(1) == owner)),
           "style_share_screened": float(s_sh[np.arange(len(owner)), owner].mean()),
           "style_share_full": float(f_sh[np.arange(len(owner)), owner].mean()),
           "screened_attributions_per_second": len(events) / screened_s, "full_attributions_per_second": len(events) / full_s,
           "screened_unet_passes": float(np.mean([a.model_evaluations for a in screened])),
           "refined_mean": float(np.mean([len(a.screen["refined"]) for a in screened]))}
    print(f"{label:>22}: {row['events']} events, same top {row['same_top']:.1%}, mean L1 {row['mean_l1']:.4f}, "
          f"style top-1 {row['style_top1_screened']:.1%} vs {row['style_top1_full']:.1%}, "
          f"style share {row['style_share_screened']:.3f} vs {row['style_share_full']:.3f}, "
          f"{row['screened_attributions_per_second']:.2f}/s vs {row['full_attributions_per_second']:.2f}/s, "
          f"passes {row['screened_unet_passes']:.0f}, refined {row['refined_mean']:.2f}", flush=True)
    if noise_seeds:
        row.update(noise_floor(family, prepared, s_sh, f_sh, full, noise_seeds))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n up to 256, fewer events (a smoke run)")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-results" / "scale-cache",
                        help="where the trained 64-owner family is kept between runs")
    parser.add_argument("--events", type=int, default=50, help="events compared with the full path at n = 1,024")
    parser.add_argument("--skip-accuracy", action="store_true", help="cost rows only (no training)")
    parser.add_argument("--skip-cost", action="store_true", help="accuracy rows only")
    parser.add_argument("--per-owner", type=int, default=None, help="held-out events per style at n = 16 and 64 (default 4; --quick 2)")
    parser.add_argument("--noise-seeds", type=int, default=2,
                        help="the full path again on this many other seeds at n = 16 and 64: its own noise floor (0: skip)")
    parser.add_argument("--rows", default="16,64,1024", help="accuracy rows to run: trained n = 16, 64; 1024 (64 + 960)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the figures (JSON)")
    args = parser.parse_args()
    import tempfile

    from royalflow.training.quiet import quiet_libraries

    quiet_libraries(import_them=True)  # the figures, not the libraries' weight-loading bars
    from royalflow.attribution.diffusion.unet import limit_cpu_threads, pick_device
    from royalflow.training.tiny import build_tiny_pipeline

    device = pick_device("auto")
    limit_cpu_threads(device)
    results: dict = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),  # type: ignore[type-arg]
                     "samples_k": SAMPLES_K, "batch_events": BATCH}
    print(f"device {device}, K = {SAMPLES_K}, batch {BATCH}, threads {torch.get_num_threads()}", flush=True)
    if not args.skip_cost:
        with tempfile.TemporaryDirectory() as tmp:
            build_tiny_pipeline(Path(tmp) / "base")
            ns = [16, 64, 256] if args.quick else [16, 64, 256, 1024]
            results["cost"] = cost_rows(ns, 1024, device, Path(tmp) / "base")
    trained = (args.cache / "families" / "cat64" / "1" / "manifest.json").is_file()
    if args.quick and not trained and not args.skip_accuracy:
        print(f"--quick: no trained catalogue under {args.cache} (training takes about 40 min); accuracy rows skipped")
    elif not args.skip_accuracy:
        path = trained_catalogue(args.cache)
        results["accuracy"] = []
        per_owner = args.per_owner or (2 if args.quick else 4)
        rows = {int(r) for r in args.rows.split(",")}
        for owners in sorted(rows & {16, 64}):
            family = family_from(path, owners, device)
            results["accuracy"].append(accuracy_row(family, held_out(family, owners, per_owner), f"trained n={owners}",
                                                    args.noise_seeds))
        if 1024 in rows:
            family = family_from(path, 64, device, distractors=960)
            every = held_out(family, 64, 2)
            pick = np.random.default_rng(0).permutation(len(every))[: (10 if args.quick else args.events)]
            events = [every[i] for i in sorted(pick)]
            results["accuracy"].append(accuracy_row(family, events, "64 trained + 960 synthetic"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
