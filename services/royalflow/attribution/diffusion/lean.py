"""Importing diffusers without the optional integrations a process never uses through it.

diffusers 0.39 imports peft, transformers and scipy.stats as it is imported, whenever they are
installed, whatever the caller needs: 2.1 s of the 5.3 s of CPU that importing ``UNet2DModel``
costs (``python -X importtime``), and no setting turns them off. An attribution agent needs two
of them not at all: its LoRA path applies adapters itself (``multilora``, no peft) and its
schedulers are DDPM (no scipy). It needs transformers, which diffusers' ``lora_state_dict`` asks
for when it reads adapter files. A process that only trains and samples the digits kind (the
demo's) needs none of the three.

A ``None`` in ``sys.modules`` makes ``importlib.util.find_spec`` report a package as absent,
which is how diffusers decides. The packages are hidden only while diffusers is imported, and
visible right after, for code that imports them itself. diffusers keeps its decision for the
life of the process, so only a process's own entry point calls this (the agent's preload, and
``royalflow demo`` before it trains the digits family): a process that trains LoRA adapters
needs diffusers' peft integration and must never call it. In a process that already holds
diffusers it does nothing.
"""

from __future__ import annotations

import importlib
import sys

# The integrations a process never uses through diffusers (see the module doc).
UNUSED_BY_AGENTS = ("peft", "scipy")
UNUSED_BY_DIGITS = ("peft", "transformers", "scipy")
# The modules whose import decides which integrations diffusers loads, and loads them.
DIFFUSERS_MODULES = ("diffusers", "diffusers.models.modeling_utils", "diffusers.models.unets.unet_2d",
                     "diffusers.schedulers.scheduling_ddpm")


def import_diffusers_without(hidden: tuple[str, ...] = UNUSED_BY_AGENTS) -> bool:
    """Import diffusers' model machinery with ``hidden`` packages hidden. Returns False, and does
    nothing, when diffusers was imported before (its decisions are taken)."""
    if "diffusers" in sys.modules:
        return False
    hide = [name for name in hidden if name not in sys.modules]  # already imported: nothing to save
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        for module in DIFFUSERS_MODULES:
            importlib.import_module(module)
    finally:
        for name in hide:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return True
