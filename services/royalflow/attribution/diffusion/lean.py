"""Importing diffusers without the optional integrations a process never uses through it.

diffusers 0.39 imports peft, transformers and scipy.stats as it is imported, whenever they are
installed, whatever the caller needs: 2.1 s of the 5.3 s of CPU that importing ``UNet2DModel``
costs (``python -X importtime``), and no setting turns them off. An attribution agent needs two
of them not at all: its LoRA path applies adapters itself (``multilora``, no peft) and its
schedulers are DDPM (no scipy). It needs transformers for the LoRA kind only: the pipeline's text
encoder, and diffusers' ``lora_state_dict`` asks for it when it reads adapter files. A process
that only trains and samples the digits kind (the demo's) needs none of the three.

An agent that serves the digits kind only (its preload setting names the kinds, and lora is not
among them) also leaves out torch._dynamo: 1.1 s of CPU, which diffusers imports for
``maybe_allow_in_graph`` and ``torch.compiler.disable`` decorators and which inference never
runs (transformers needs it, so only where transformers is hidden too). While diffusers is
imported, ``torch.compiler.disable`` is the identity: those decorators only matter under
``torch.compile``, which no royalflow process uses.

A ``None`` in ``sys.modules`` makes ``importlib.util.find_spec`` report a package as absent,
which is how diffusers decides. The packages are hidden only while diffusers is imported, and
visible right after, for code that imports them itself. diffusers keeps its decision for the
life of the process, so only a process's own entry point calls this (the agent's preload, and
``royalflow demo`` before it trains the digits family): a process that trains LoRA adapters
needs diffusers' peft integration and must never call it. In a process that already holds
diffusers it does nothing. It keeps what diffusers was imported without, so that the LoRA kind
refuses to load by name (``require``) rather than fail on a missing integration.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

from royalflow.errors import ConfigurationError

# The integrations a process never uses through diffusers (see the module doc).
UNUSED_BY_AGENTS = ("peft", "scipy")
UNUSED_BY_DIGITS = ("peft", "transformers", "scipy")
UNUSED_BY_DIGITS_AGENTS = (*UNUSED_BY_DIGITS, "torch._dynamo")
# The modules whose import decides which integrations diffusers loads, and loads them.
DIFFUSERS_MODULES = ("diffusers", "diffusers.models.modeling_utils", "diffusers.models.unets.unet_2d",
                     "diffusers.schedulers.scheduling_ddpm")

_hidden: frozenset[str] = frozenset()  # what this process's diffusers was imported without


def unused_by_agent(kinds: Iterable[str]) -> tuple[str, ...]:
    """What an agent that serves exactly ``kinds`` never uses through diffusers."""
    return UNUSED_BY_AGENTS if "lora" in set(kinds) else UNUSED_BY_DIGITS_AGENTS


def import_diffusers_without(hidden: tuple[str, ...] = UNUSED_BY_AGENTS) -> bool:
    """Import diffusers' model machinery with ``hidden`` packages hidden. Returns False, and does
    nothing, when diffusers was imported before (its decisions are taken)."""
    global _hidden
    if "diffusers" in sys.modules:
        return False
    if "torch._dynamo" in hidden and "transformers" not in hidden:
        raise ValueError("transformers imports torch._dynamo: hide both or neither")
    hide = [name for name in hidden if name not in sys.modules]  # already imported: nothing to save
    import torch.compiler

    disable = torch.compiler.disable
    if "torch._dynamo" in hide:
        torch.compiler.disable = _identity_decorator  # type: ignore[assignment]
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        for module in DIFFUSERS_MODULES:
            importlib.import_module(module)
    finally:
        torch.compiler.disable = disable
        for name in hide:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    _hidden = frozenset(hide)
    return True


def require(package: str, for_what: str) -> None:
    """ConfigurationError, naming ``for_what``, when diffusers in this process left ``package`` out."""
    if package in _hidden:
        raise ConfigurationError(
            f"{for_what} needs diffusers' {package} integration, which this process left out as it "
            f"started: its preload setting (ROYALFLOW_ATTRIBUTION_PRELOAD) names no kind that needs "
            f"it; add the kind to the setting (or set 'auto') and restart the agent")


def _identity_decorator(fn=None, recursive=True, *, reason=None):  # type: ignore[no-untyped-def]
    """torch.compiler.disable's signature, without importing torch._dynamo: no compile runs here."""
    return fn if fn is not None else (lambda inner: inner)
