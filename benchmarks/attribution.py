#!/usr/bin/env python3
"""Attribution throughput and latency on diffusion families (random-initialised tiny UNets:
the cost of a forward pass does not depend on the weights).

    python benchmarks/attribution.py [--quick]

Prints, per mode and owner count: attributions/s and per-event latency p50/p99 (an event's
latency is the duration of the batch it rides in), forward rows per event; then the speed-up
of batched evaluation over naive one-coalition-one-item-one-timestep evaluation; GPU figures
when CUDA is present. Writes bench-results/attribution.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from royalflow.attribution.diffusion.unet import DEFAULT_CONFIG, DEFAULT_SCHEDULER, build_unet, inference_dtype, pick_device, place
from royalflow.attribution.families.digits import DiffusionFamily
from royalflow.attribution.family import Prepared, seed_for
from royalflow.producer.events import generation_event

OUT = Path(__file__).resolve().parents[1] / "bench-results" / "attribution.json"


def make_family(n: int, mode: str, device: torch.device, samples: int) -> DiffusionFamily:
    owners = [f"o{i}" for i in range(n)]
    masks = list(range(1 << n)) if mode == "exact" else [0, *[1 << i for i in range(n)]]
    config = {**DEFAULT_CONFIG, "num_class_embeds": 11}
    torch.manual_seed(0)
    prototype = build_unet(config)
    models = {}
    for m in masks:  # copies of one random model: same cost, less set-up time
        model = build_unet(config)
        model.load_state_dict(prototype.state_dict())
        models[m] = place(model, device, inference_dtype(device))
    manifest = {
        "family_id": f"bench-{mode}-{n}", "version": "1", "owners": owners, "pool_fraction": "3/10", "mode": mode,
        "unet": config, "levels": 17, "scheduler": DEFAULT_SCHEDULER,
        "estimator": {"samples": samples, "target_std_error": 0.05, "max_permutations": 400},
        "data_sizes": {"_base": 500, **{o: 400 for o in owners}},
    }
    return DiffusionFamily(manifest, models, device)


def items(family: DiffusionFamily, count: int) -> list[Prepared]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        from royalflow.producer.events import png_bytes

        png = png_bytes((rng.integers(0, 17, (8, 8)) * 15).astype(np.uint8))
        event = generation_event(event_id=f"bench-{i}", family_id=family.family_id, family_version="1",
                                 revenue_amount=1000, currency="USD", content=png, class_label=int(i % 10))
        out.append(family.prepare(event))
    return out


def run_case(family: DiffusionFamily, batch: int, repeats: int) -> dict:
    work = items(family, batch)
    family.attribute(work[:1])  # warm-up
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        family.attribute(work)
        durations.append(time.perf_counter() - start)
    d = np.array(durations)
    return {
        "batch": batch, "repeats": repeats, "attributions_per_second": batch / float(np.median(d)),
        "latency_p50_seconds": float(np.percentile(d, 50)), "latency_p99_seconds": float(np.percentile(d, 99)),
        "forward_rows_per_event": len(family.models) * (family.estimator.samples + 1),
    }


def naive_seconds_per_event(family: DiffusionFamily) -> float:
    """One coalition model, one item, one timestep per forward call (no batching at all)."""
    work = items(family, 1)[0]
    x0 = torch.zeros((1, 1, 8, 8))
    label = torch.tensor([work.item[1]])
    start = time.perf_counter()
    with torch.inference_mode():
        for model in family.models.values():
            for s in range(family.estimator.samples + 1):
                model(x0.to(family.device, family.dtype), torch.tensor([s]).to(family.device),
                      class_labels=label.to(family.device))
    if family.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer cases and repeats")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args()
    device = pick_device(args.device)
    samples = 16
    exact_ns = [2, 4, 6] if args.quick else [2, 3, 4, 5, 6, 7, 8]
    comp_ns = [4, 16, 64] if args.quick else [4, 8, 16, 32, 64]
    repeats = 3 if args.quick else 7
    results: dict = {"device": str(device), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                     "threads": torch.get_num_threads(), "mc_samples": samples, "exact": [], "compositional": []}
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, K = {samples} timesteps/likelihood")
    print(f"{'mode':<14}{'n':>4}{'batch':>7}{'rows/event':>12}{'attr/s':>10}{'p50 s':>9}{'p99 s':>9}")
    for mode, ns in (("exact", exact_ns), ("compositional", comp_ns)):
        for n in ns:
            family = make_family(n, mode, device, samples)
            batch = 32 if len(family.models) <= 32 else 8 if len(family.models) <= 128 else 2
            row = {"n": n, **run_case(family, batch, repeats)}
            if device.type == "cuda":
                row["gpu_max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated()
            results[mode].append(row)
            print(f"{mode:<14}{n:>4}{batch:>7}{row['forward_rows_per_event']:>12}{row['attributions_per_second']:>10.2f}"
                  f"{row['latency_p50_seconds']:>9.3f}{row['latency_p99_seconds']:>9.3f}")
    family = make_family(4, "exact", device, samples)
    batched = run_case(family, 32, repeats)
    naive = naive_seconds_per_event(family)
    speedup = naive * batched["attributions_per_second"]
    results["speedup"] = {"n": 4, "mode": "exact", "naive_seconds_per_event": naive,
                          "batched_seconds_per_event": 1 / batched["attributions_per_second"], "speedup": speedup}
    print(f"batched vs naive (exact, n=4, 16 models x {samples + 1} passes/event): naive {naive * 1000:.0f} ms/event, "
          f"batched {1000 / batched['attributions_per_second']:.1f} ms/event -> {speedup:.1f}x")
    if device.type == "cuda":
        print(f"GPU max memory allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
