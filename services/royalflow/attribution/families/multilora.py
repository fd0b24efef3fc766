"""Many LoRA adapters in ONE batched UNet forward, each row with its own adapter (the
multi-adapter serving idea of Punica / S-LoRA, arXiv 2310.18547, 2311.03285), without peft.

A ``FactorStack`` holds M adapters' factors per LoRA'd Linear layer, stacked -- A: (M, r, in),
B: (M, out, r) with each adapter's scaling folded into B; adapters of smaller rank are
zero-padded (exactly the same product), and a slot of None is "no adapter" (zero factors: the
plain base). An ``AdapterBank`` puts forward hooks on the base UNet's Linear layers and adds

    y_row = base(x_row) + B[a_row] @ A[a_row] @ x_row

where a_row is the row's slot in the bank's current stack. The stack can be swapped between
forwards (``use``): a family of thousands of owners keeps all factors on the host and puts on
the device only the few adapters an event batch needs (``families/resident.py``).

Rows laid out slot-major in M equal blocks take a reshape + bmm path with no gather; any other
index gathers each row's factors. ``capture`` additionally records each layer's input and the
gradient of its output in a backward pass: what the first-order screen (``screen.py``) needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from royalflow.attribution.families.adapters import Factors
from royalflow.errors import ConfigurationError


@dataclass(frozen=True)
class FactorStack:
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> (A (M, r, in), B (M, out, r))
    slots: int

    @classmethod
    def build(cls, adapters: Sequence[Factors | None], shapes: dict[str, tuple[int, int]],
              *, dtype: torch.dtype = torch.float32) -> "FactorStack":
        names = sorted({layer for f in adapters if f is not None for layer in f})
        layers = {}
        for layer in names:
            if layer not in shapes:
                raise ConfigurationError(f"adapter layer {layer} is not a Linear layer of the base UNet")
            out_features, in_features = shapes[layer]
            rank = max(f[layer][0].shape[0] for f in adapters if f is not None and layer in f)
            a = torch.zeros((len(adapters), rank, in_features), dtype=dtype)
            b = torch.zeros((len(adapters), out_features, rank), dtype=dtype)
            for slot, factors in enumerate(adapters):
                if factors is None or layer not in factors:
                    continue
                fa, fb = factors[layer]
                a[slot, : fa.shape[0]] = fa.to(dtype)
                b[slot, :, : fb.shape[1]] = fb.to(dtype)
            layers[layer] = (a, b)
        return cls(layers, len(adapters))

    def take(self, slots: Sequence[int] | torch.Tensor, *, device: torch.device | None = None,
             dtype: torch.dtype | None = None) -> "FactorStack":
        """A new stack of the given slots (in that order), optionally moved to a device/dtype."""
        index = torch.as_tensor(slots, dtype=torch.int64)
        layers = {name: (a.index_select(0, index).to(device=device, dtype=dtype),
                         b.index_select(0, index).to(device=device, dtype=dtype))
                  for name, (a, b) in self.layers.items()}
        return FactorStack(layers, int(index.numel()))

    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in self.layers.values())


class AdapterBank:
    def __init__(self, unet: torch.nn.Module, stack: FactorStack) -> None:
        modules = dict(unet.named_modules())
        missing = [name for name in stack.layers if not isinstance(modules.get(name), torch.nn.Linear)]
        if missing:
            raise ConfigurationError(f"adapter layers not found as Linear layers in the base UNet: {missing[:3]}")
        self.stack = stack
        self.index: torch.Tensor | None = None  # (rows,) slot per row, set by select()
        self._blocks: int | None = None  # M when rows are M equal slot-major blocks
        self.captured: dict[str, list[list]] | None = None  # layer -> [[input, output grad] per forward]
        self._hooks = [modules[name].register_forward_hook(self._hook_for(name)) for name in stack.layers]
        self.layers = len(self._hooks)

    def use(self, stack: FactorStack) -> None:
        """Swap the active stack (same layers); the next select() indexes into it."""
        if set(stack.layers) != set(self.stack.layers):
            raise ConfigurationError("a bank's stacks must cover the same layers")
        self.stack = stack

    def select(self, index: torch.Tensor) -> None:
        """Slot of every row of the next forward(s), in the active stack."""
        self.index = index
        m = self.stack.slots
        rows = index.numel()
        blocked = rows % m == 0 and bool(torch.equal(index.cpu(), torch.arange(m).repeat_interleave(rows // m)))
        self._blocks = m if blocked else None

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _hook_for(self, name: str):  # type: ignore[no-untyped-def]
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:  # type: ignore[type-arg]
            if self.index is None:
                return output
            x = args[0]
            a, b = self.stack.layers[name]
            rows = x.shape[0]
            if rows != self.index.numel():
                raise RuntimeError(f"adapter index has {self.index.numel()} rows, the layer got {rows}")
            flat = x.reshape(rows, -1, x.shape[-1])
            if self._blocks is not None:
                # Slot-major blocks: (M, rows/M * tokens, in) @ (M, in, r) @ (M, r, out), no gather.
                grouped = flat.reshape(self._blocks, -1, x.shape[-1])
                delta = torch.bmm(torch.bmm(grouped, a.transpose(1, 2)), b.transpose(1, 2))
            else:
                idx = self.index.to(a.device)
                delta = torch.bmm(torch.bmm(flat, a[idx].transpose(1, 2)), b[idx].transpose(1, 2))
            out = output + delta.reshape(output.shape)
            if self.captured is not None and torch.is_grad_enabled():
                if not out.requires_grad:
                    # The first adapted layer starts the graph: the backward stops here, not at the input.
                    out = out.detach().requires_grad_(True)
                entry = [x.detach(), None]
                self.captured.setdefault(name, []).append(entry)
                out.register_hook(lambda grad: entry.__setitem__(1, grad.detach()))
            return out

        return hook
