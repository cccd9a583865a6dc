"""One LoRA Linear layer's resident adapters, stacked by slot (a part of engine/lora_stacks.py)."""

from __future__ import annotations

import torch


class Stack:
    """One LoRA Linear layer's resident adapters: slot s holds A [R, in] and B [out, R], rank-padded."""

    def __init__(
        self, in_features: int, out_features: int, slots: int, rank: int, dtype: torch.dtype, device: torch.device
    ):
        self.a = torch.zeros(slots, rank, in_features, dtype=dtype, device=device)
        self.b = torch.zeros(slots, out_features, rank, dtype=dtype, device=device)
        self.scale = torch.zeros(slots, dtype=torch.float32, device=device)
        self.keys: set[str] = set()  # adapters with weights in this layer
        self._fused: torch.Tensor | None = None  # every slot's scaled B side by side [out, slots * R], built on use

    def fused_b(self) -> torch.Tensor:
        """B of every slot times its scaling, as one [out, slots * R] matrix: h [.., slots * R] @ it.T sums each
        row's own slot once the other slots' columns of h are masked to zero."""
        if self._fused is None:
            scaled = self.b * self.scale.to(self.b.dtype).view(-1, 1, 1)
            self._fused = scaled.permute(1, 0, 2).reshape(self.b.shape[1], -1).contiguous()
        return self._fused

    def resized(self, slots: int, rank: int) -> Stack:
        slots_now, rank_now, _ = self.a.shape
        new = Stack(self.a.shape[2], self.b.shape[1], slots, rank, self.a.dtype, self.a.device)
        new.a[:slots_now, :rank_now] = self.a
        new.b[:slots_now, :, :rank_now] = self.b
        new.scale[:slots_now] = self.scale
        new.keys = self.keys
        return new

    def write(self, slot: int, key: str, a: torch.Tensor | None, b: torch.Tensor | None, scaling: float) -> None:
        self._fused = None
        self.a[slot].zero_()
        self.b[slot].zero_()
        self.scale[slot] = 0.0
        self.keys.discard(key)
        if a is not None and b is not None:
            self.a[slot, : a.shape[0]] = a
            self.b[slot, :, : b.shape[1]] = b
            self.scale[slot] = scaling
            self.keys.add(key)
