#!/usr/bin/env python3
"""LoRA families on the tiny text-to-image pipeline: one batched UNet forward with per-row
adapter selection vs one adapter per forward (switching).

    python benchmarks/lora.py [--quick]

For exact families (n = 2..6, 2^n adapters) and compositional families (n + 1 adapters, n up
to 64): attributions/s of each strategy on the same batch (the likelihoods of every adapter),
their ratio, attributions/s of the agent's full ``attribute`` (likelihoods + Shapley values,
batched), and peak memory (CPU:
peak RSS of the process, reset before each case through /proc/self/clear_refs; CUDA:
torch.cuda.max_memory_allocated). Adapters are random (rank 8 on to_q/to_k/to_v/to_out.0):
the cost of a forward does not depend on the weights. Writes bench-results/lora.json.
"switching" runs one adapter per forward through the same hooks (the per-adapter baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

OUT = Path(__file__).resolve().parents[1] / "bench-results" / "lora.json"


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS)
    except OSError:
        pass


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated())
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def make_family(folder: Path, n: int, mode: str, device: torch.device, samples: int,
                screen: dict | None = None):  # type: ignore[no-untyped-def,type-arg]
    """A family of random rank-8 adapters on the tiny pipeline (the cost of a forward does not
    depend on what an adapter learned). ``screen``: the manifest's screen settings."""
    from royalflow.attribution.diffusion.unet import inference_dtype
    from royalflow.attribution.families.base import load_base
    from royalflow.attribution.families.lora import LoraFamily
    from royalflow.attribution.families.manifest import LoraManifest
    from royalflow.training.lora import TARGET_MODULES
    from royalflow.training.tiny import random_factors

    base = load_base(folder, device=device, dtype=inference_dtype(device))
    masks = list(range(1 << n)) if mode == "exact" else [0, *[1 << i for i in range(n)]]
    owners = [f"o{i}" for i in range(n)]
    torch.nn.Module.to(base.unet, device=device, dtype=inference_dtype(device))
    manifest = LoraManifest.model_validate({
        "kind": "lora", "family_id": f"bench-{mode}-{n}", "version": "1", "owners": owners, "pool_fraction": "3/10",
        "mode": mode, "base": str(folder), "resolution": 32, "rank": 8, "target_modules": list(TARGET_MODULES),
        **({"adapters": {hex(m): {"file": f"{m}.safetensors", "sha256": "0" * 64} for m in masks}} if mode == "exact" else
           {"components": {key: {"file": f"components/{i:05d}.safetensors", "sha256": "0" * 64}
                           for i, key in enumerate(["_control", *owners])}}),
        "data_sizes": {"_base": 100, **{o: 10 + i for i, o in enumerate(owners)}},
        "estimator": {"samples": samples, "max_permutations": 200, "target_std_error": 0.05,
                      **({"screen": screen} if screen else {})},
    })
    return LoraFamily(manifest, base, device, random_factors(base.unet, len(masks), seed=n))


def batch_of(family, size: int):  # type: ignore[no-untyped-def]
    from royalflow.attribution.family import Prepared, seed_for
    from royalflow.producer.events import generation_event
    from royalflow.attribution.families.content import png

    rng = np.random.default_rng(0)
    out = []
    for i in range(size):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        event = generation_event(event_id=f"bench-{i}", family_id=family.family_id, family_version="1",
                                 revenue_amount=1000, currency="USD", content=png(pixels), prompt="a red circle")
        out.append(family.prepare(event))
    return out


def measure(family, batch, strategy: str, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per batch: the likelihoods of every adapter (``utility_samples``) for the two
    strategies; ``attribute`` (likelihoods + Shapley values, what the agent runs) for "agent"."""
    run = (lambda: family.attribute(batch)) if strategy == "agent" else (
        lambda: family.utility_samples(batch, strategy=strategy))
    run()  # warm-up (and the prompt cache)
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer cases and repeats")
    args = parser.parse_args()
    from royalflow.attribution.diffusion.unet import limit_cpu_threads, pick_device
    from royalflow.training.tiny import build_tiny_pipeline

    device = pick_device("auto")
    limit_cpu_threads(device)
    exact_ns = [2, 4, 6] if args.quick else [2, 3, 4, 5, 6]
    comp_ns = [4, 16, 64] if args.quick else [4, 8, 16, 32, 64]
    repeats = 1 if args.quick else 2
    batch_size, samples = 8, 8
    results = {"device": str(device), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
               "cpu_threads": torch.get_num_threads(), "batch_events": batch_size, "samples_k": samples, "cases": []}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_pipeline(Path(tmp) / "base")
        print(f"device {device}, batch {batch_size} events, K = {samples}, threads {torch.get_num_threads()}")
        print(f"{'mode':14} {'n':>3} {'adapters':>8} {'batched/s':>10} {'switch/s':>10} {'ratio':>6} "
              f"{'agent/s':>8} {'peak MiB b':>10} {'peak MiB s':>10}")
        for mode, ns in (("exact", exact_ns), ("compositional", comp_ns)):
            for n in ns:
                family = make_family(Path(tmp) / "base", n, mode, device, samples)
                batch = batch_of(family, batch_size)
                row = {"mode": mode, "n": n, "adapters": len(family.masks)}
                for strategy in ("batched", "switching", "agent"):
                    reset_peak()
                    seconds = measure(family, batch, strategy, repeats)
                    row[f"{strategy}_attributions_per_second"] = batch_size / seconds
                    row[f"{strategy}_peak_bytes"] = peak_bytes(device)
                row["ratio"] = row["batched_attributions_per_second"] / row["switching_attributions_per_second"]
                results["cases"].append(row)
                print(f"{mode:14} {n:>3} {row['adapters']:>8} {row['batched_attributions_per_second']:>10.2f} "
                      f"{row['switching_attributions_per_second']:>10.2f} {row['ratio']:>6.2f} "
                      f"{row['agent_attributions_per_second']:>8.2f} "
                      f"{row['batched_peak_bytes'] / 2**20:>10.0f} {row['switching_peak_bytes'] / 2**20:>10.0f}", flush=True)
                family.bank.close()
                del family
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
