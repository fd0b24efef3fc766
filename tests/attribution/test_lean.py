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



DIGITS_AGENT = textwrap.dedent("""
    import sys
    from royalflow.attribution.diffusion.lean import import_diffusers_without, unused_by_agent
    from royalflow.errors import ConfigurationError
    assert unused_by_agent(["diffusion", "lora"]) == ("peft", "scipy")
    assert import_diffusers_without(unused_by_agent(["diffusion"]))
    import torch
    from royalflow.attribution.families.digits import DiffusionFamily  # the digits kind works
    from royalflow.attribution.diffusion.unet import build_unet
    model = build_unet({"sample_size": 8, "in_channels": 1, "out_channels": 1, "layers_per_block": 1,
                        "block_out_channels": [16, 32], "down_block_types": ["DownBlock2D", "DownBlock2D"],
                        "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 4,
                        "num_class_embeds": 11, "add_attention": False})
    with torch.inference_mode():
        model(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2]), class_labels=torch.tensor([0, 1]))
    print("dynamo", "torch._dynamo" in sys.modules, "transformers", "transformers" in sys.modules)
    print("compiler.disable restored", torch.compiler.disable.__module__)
    try:
        from royalflow.attribution.families import _lora
        _lora({"family_id": "styles"}, None, "cpu", 1)
    except ConfigurationError as exc:
        print("refused", "ROYALFLOW_ATTRIBUTION_PRELOAD" in str(exc), "'styles'" in str(exc))
""")


def test_a_digits_only_agent_leaves_out_transformers_and_dynamo_and_refuses_lora_by_name() -> None:
    done = subprocess.run([sys.executable, "-c", DIGITS_AGENT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:3] == [
        "dynamo False transformers False", "compiler.disable restored torch.compiler", "refused True True"], done.stdout
