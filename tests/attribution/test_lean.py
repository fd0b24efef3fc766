"""diffusers imported without the integrations an agent never uses through it (lean.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import sys
    from royalflow.attribution.diffusion.lean import UNUSED_BY_DIGITS, import_diffusers_without
    assert import_diffusers_without(UNUSED_BY_DIGITS)
    assert not import_diffusers_without()  # diffusers is in: nothing more to do
    import royalflow.attribution.families.digits  # the digits kind, on the lean import
    import royalflow.attribution.families.lora  # and the LoRA kind
    print(sorted(name for name in UNUSED_BY_DIGITS if name in sys.modules))
    from diffusers import AutoencoderKL, UNet2DConditionModel  # lazily imported later: still fine
    from transformers import CLIPTextModel  # visible again for code that imports it itself
    print("ok", all(name not in sys.modules or sys.modules[name] is not None for name in UNUSED_BY_DIGITS))
""")


def test_diffusers_imports_without_peft_transformers_and_scipy_which_stay_importable() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["[]", "ok True"], done.stdout

