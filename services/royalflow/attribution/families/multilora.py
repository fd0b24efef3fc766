"""Many LoRA adapters in ONE batched UNet forward, each row with its own adapter (the
multi-adapter serving idea of Punica / S-LoRA, arXiv 2310.18547, 2311.03285).

peft loads every adapter into the UNet as usual (``load_lora_adapter``); this module reads the
loaded factors back, stacks them per LoRA'd Linear layer -- A: (M, r, in), B: (M, out, r)
with the adapter's scaling folded into B -- switches peft's own adapter path off, and adds

    y_row = base(x_row) + B[a_row] @ A[a_row] @ x_row

by a forward hook, where a_row is the row's adapter index. Slot 0 .. M-1 follow ``names``; a
name of None is "no adapter" (zero factors: the plain base). Adapters of different ranks are
zero-padded to the largest rank (exactly the same product).

Rows laid out adapter-major in M equal blocks (how the family builds its batches) take a
reshape + bmm path with no gather; any other index gathers each row's factors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class AdapterBank:
    def __init__(self, unet: torch.nn.Module, names: Sequence[str | None]) -> None:
        from peft.tuners.lora import LoraLayer

        self.names = list(names)
        self.index: torch.Tensor | None = None  # (rows,) adapter slot per row, set by select()
        self._blocks: int | None = None  # M when rows are M equal adapter-major blocks
        self._hooks = []
        self.layers = 0
        for module in unet.modules():
            if not isinstance(module, LoraLayer):
                continue
            base = module.get_base_layer()
            if not isinstance(base, torch.nn.Linear):
                continue
            rank = max((module.r[n] for n in self.names if n is not None and n in module.r), default=0)
            if rank == 0:
                continue
            weight = base.weight
            a = torch.zeros((len(self.names), rank, base.in_features), dtype=weight.dtype, device=weight.device)
            b = torch.zeros((len(self.names), base.out_features, rank), dtype=weight.dtype, device=weight.device)
            for slot, name in enumerate(self.names):
                if name is None or name not in module.lora_A:
                    continue
                r = module.r[name]
                a[slot, :r] = module.lora_A[name].weight.detach().to(weight.dtype)
                b[slot, :, :r] = module.lora_B[name].weight.detach().to(weight.dtype) * module.scaling[name]
            module._royalflow_bank = (a, b)  # noqa: SLF001 -- kept on the layer the hook serves
            self._hooks.append(module.register_forward_hook(self._hook))
            self.layers += 1
        # peft's own per-adapter path off: the base layers run once and the hook adds the deltas.
        unet.disable_adapters()

    def select(self, index: torch.Tensor) -> None:
        """Adapter slot of every row of the next forward(s)."""
        self.index = index
        counts = torch.bincount(index, minlength=len(self.names))
        rows = index.numel()
        blocked = rows % len(self.names) == 0 and bool(torch.all(counts == rows // len(self.names)))
        if blocked:
            blocked = bool(torch.equal(index.cpu(), torch.arange(len(self.names)).repeat_interleave(rows // len(self.names))))
        self._blocks = len(self.names) if blocked else None

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _hook(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:  # type: ignore[type-arg]
        if self.index is None:
            return output
        x = args[0]
        a, b = module._royalflow_bank  # noqa: SLF001
        rows = x.shape[0]
        if rows != self.index.numel():
            raise RuntimeError(f"adapter index has {self.index.numel()} rows, the layer got {rows}")
        flat = x.reshape(rows, -1, x.shape[-1])
        if self._blocks is not None:
            # Adapter-major blocks: (M, rows/M * tokens, in) @ (M, in, r) @ (M, r, out), no gather.
            m = self._blocks
            grouped = flat.reshape(m, -1, x.shape[-1])
            delta = torch.bmm(torch.bmm(grouped, a.transpose(1, 2)), b.transpose(1, 2))
        else:
            idx = self.index.to(a.device)
            delta = torch.bmm(torch.bmm(flat, a[idx].transpose(1, 2)), b[idx].transpose(1, 2))
        return output + delta.reshape(output.shape)
