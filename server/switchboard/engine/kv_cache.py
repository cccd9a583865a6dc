"""A KV cache that appends in place: transformers' DynamicCache with room to grow.

transformers' `DynamicLayer.update` concatenates the whole cache with each new token, so every decode
step copies every layer's keys and values (at 16 rows of ~150 tokens on Gemma 3 270M, ~40 MB a step,
freshly allocated). `GrowingLayer` keeps them in buffers with `SPARE` free positions: a step writes its
token in place and the layer's `keys`/`values` are views of the filled part. The buffers are replaced
only when they are full, or when the batch replaced the tensors (rows joined or left: engine/batch.py
assigns plain tensors, which the next update copies into a new buffer). Everything that reads the cache
(masks, attention, `get_seq_length`) sees the same tensors as with DynamicLayer.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

SPARE = 64  # free positions a buffer gets when it is (re)made: one copy per 64 steps instead of one per step


def _front_of(tensor: torch.Tensor, buffer: torch.Tensor, extra: int) -> bool:
    """Whether `tensor` is the front of `buffer` along the sequence dim, with room for `extra` more positions."""
    return (
        tensor.dim() == 4
        and tensor.data_ptr() == buffer.data_ptr()
        and tensor.stride() == buffer.stride()
        and tensor.shape[:2] == buffer.shape[:2]
        and tensor.shape[3] == buffer.shape[3]
        and tensor.shape[2] + extra <= buffer.shape[2]
    )


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views into buffers with spare positions."""

    _key_buffer: torch.Tensor | None = None
    _value_buffer: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys, values = self.keys, self.values
        assert keys is not None and values is not None
        new = key_states.shape[-2]
        key_buffer, value_buffer = self._key_buffer, self._value_buffer
        if (
            key_buffer is None
            or value_buffer is None
            or not _front_of(keys, key_buffer, new)
            or not _front_of(values, value_buffer, new)
        ):  # first write, full, or the batch replaced the tensors: a new buffer holding what there is
            length = keys.shape[-2] if keys.dim() == 4 else 0
            batch, heads, _, dim = key_states.shape
            key_buffer = key_states.new_empty(batch, heads, length + new + SPARE, dim)
            value_buffer = value_states.new_empty(batch, heads, length + new + SPARE, value_states.shape[-1])
            if length:
                key_buffer[:, :, :length] = keys
                value_buffer[:, :, :length] = values
            self._key_buffer, self._value_buffer = key_buffer, value_buffer
        else:
            length = keys.shape[-2]
        key_buffer[:, :, length : length + new] = key_states
        value_buffer[:, :, length : length + new] = value_states
        keys, values = key_buffer[:, :, : length + new], value_buffer[:, :, : length + new]
        self.keys, self.values = keys, values
        return keys, values

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        super().reset()


class GrowingCache(DynamicCache):
    """DynamicCache (full layers, created as the model first writes them) of GrowingLayer."""

    def __init__(self) -> None:
        Cache.__init__(self, layer_class_to_replicate=GrowingLayer)
