#!/usr/bin/env python3
"""Importing a compositional LoRA family of many owners (``royalflow families import
--from-folder``) on the tiny text-to-image pipeline.

    python benchmarks/lora_import.py [--quick]

Random rank-8 adapters on to_q/to_k/to_v/to_out.0 (``training.tiny.write_random_lora``: the
cost of the checks does not depend on the weights), one per owner plus a control, written to a
temporary folder; then the import (checks every file's header and tensors against the base
UNet, copies, checksums, writes the manifest) is timed in-process, after the model libraries
are imported once. Wall and CPU seconds (on a shared host, CPU time is the steadier figure).
Owners: 1,024 (``--quick``: 256). Writes bench-results/lora_import.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import print_and_save  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="256 owners instead of 1,024")
    args = parser.parse_args()
    from royalflow.training.importing import import_lora_folder
    from royalflow.training.lorafiles import base_linear_shapes
    from royalflow.training.quiet import quiet_libraries
    from royalflow.training.tiny import build_tiny_pipeline, write_random_lora

    quiet_libraries(import_them=True)
    owners = 256 if args.quick else 1024
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_tiny_pipeline(root / "base")
        shapes = base_linear_shapes(root / "base")  # also imports diffusers before the clock starts
        names = [f"owner-{i:05d}" for i in range(owners)]
        for i, owner in enumerate(names):
            write_random_lora(root / "in" / f"{owner}.safetensors", shapes, seed=i + 1)
        write_random_lora(root / "in" / "_control.safetensors", shapes, seed=0)
        (root / "in" / "data_sizes.json").write_text(json.dumps({"_base": 1000, **{o: 10 for o in names}}))
        bytes_in = sum(p.stat().st_size for p in (root / "in").glob("*.safetensors"))
        started, cpu_started = time.perf_counter(), time.process_time()
        import_lora_folder(root / "families", "bench", "1", root / "base", root / "in")
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    print_and_save("lora_import", "LoRA family import --from-folder (tiny pipeline, rank 8)", {
        "owners": owners, "files": owners + 1, "adapter_bytes_total": bytes_in,
        "import_seconds": round(seconds, 2), "import_cpu_seconds": round(cpu_seconds, 2), "files_per_second": round((owners + 1) / seconds, 1),
        "cpu": platform.processor() or platform.machine(),
    })


if __name__ == "__main__":
    main()
