"""One base causal LM plus many LoRA adapters, each batch row with its own adapter.

The adapters live in one PEFT model, and every plain LoRA adapter's weights also live in per-layer
stacks (`_Stack`: A [slots, R, in], B [slots, out, R], zero-padded to the largest rank, slot 0 all
zeros for base rows); PEFT's own modules hold views into them, so nothing is stored twice. Each
LoRA layer's forward is replaced once: base_layer(x), then the same few ops whether a batch holds one
adapter or sixteen (PEFT's mixed-batch forward runs about five per distinct adapter per layer): two
matmuls when all rows share an adapter; with few resident slots, x through every slot's A, a mask
keeping each row's own slot, one fused B; with many, the BGMV of S-LoRA and Punica (each row's A and B
gathered by slot, two batched matmuls).
A batch that names an adapter PEFT alone can compute (LoRA biases, embedding layers...) goes through PEFT's
`adapter_names` path instead. Logits are computed for the last position only.

Loading has a fast path for the common case (a plain LoRA on modules that already carry LoRA layers):
`prepare` reads the weights and builds the A/B modules in any thread without touching the model, and
`attach` only inserts them into the existing layers' dicts - a few hundred dict writes in the engine
thread instead of PEFT's ~100 ms walk over every module. Anything else goes through PEFT's loader.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from torch import nn

from .lora_slots import Stack as _Stack

logger = logging.getLogger(__name__)

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch
MASKED_COLUMNS = 128  # mixed batches mask every slot's A while slots x rank is this small (3 adapters: 4 x 8)

# LoraConfig fields that change what a LoRA layer computes; the fast path takes only plain LoRA
# (every one of them unset), anything else goes through PEFT's own loader.
_NOT_PLAIN = (
    "use_dora",
    "lora_bias",
    "fan_in_fan_out",
    "use_qalora",
    "use_bdlora",
    "rank_pattern",
    "alpha_pattern",
    "modules_to_save",
    "trainable_token_indices",
    "target_parameters",
    "layer_replication",
    "alora_invocation_tokens",
    "arrow_config",
)
_WEIGHT_SUFFIXES = (".lora_A.weight", ".lora_B.weight")
# Of those, the ones whose effect lies outside the LoRA Linear layers' A/B (or in a variant of them):
# an adapter with any of them is served by PEFT's own mixed-batch forward, never from the stacks.
# Rank and alpha patterns only give each layer its own r and scaling, which the stacks hold per layer.
_NOT_STACKABLE = tuple(name for name in _NOT_PLAIN if name not in ("rank_pattern", "alpha_pattern"))


@dataclass
class PreparedAdapter:
    """An adapter's LoRA modules, built off the engine thread, ready to be attached."""

    config: Any  # peft.LoraConfig
    layers: dict[str, tuple[nn.Module, nn.Module]]  # module name -> (lora_A, lora_B)
    r: int
    alpha: float
    scaling: float


@dataclass
class _Rows:
    """Which adapter each row of the running forward uses."""

    names: list[str]  # per row, BASE_ROW for none
    slots: torch.Tensor | None  # per-row slot indices; None when every row is on one slot
    # [rows, 1, slots * R]: 1 on the columns of the row's own slot; set where a mixed batch is cheaper masked
    mask: torch.Tensor | None
    slot: int  # that one slot (0: every row on the base model)
    peft: bool  # a row's adapter is not in the stacks: PEFT's mixed-batch forward for every layer


class LoraStacks:
    def __init__(self, model: Any, dtype: torch.dtype, device: torch.device) -> None:
        self.model = model  # the causal LM, or the PeftModel wrapping it once an adapter is loaded
        self.dtype = dtype
        self.device = device
        # LoRA weights and math: the base dtype, but fp32 on a bf16 CPU base. A rank-8 product is a pair of tiny
        # matmuls, which oneDNN runs ~4x slower in bf16 than MKL in fp32 (45-58 against 11-13 µs a projection at
        # one row on an AVX-512-bf16 EPYC: 126 projections a step on Gemma 3 270M); fp32 also rounds once, not twice
        self.lora_dtype = torch.float32 if dtype == torch.bfloat16 and device.type == "cpu" else dtype
        self.adapters: set[str] = set()  # loaded adapter keys (the engine's only record of them)
        self.use_stacks = True  # False: every batch through PEFT's adapter_names forward (the reference path)
        self.head: nn.Module | None = None  # what logits() scores with in place of the lm_head (engine/lm_head.py)
        self._rows: _Rows | None = None
        self._layers: dict[str, Any] = {}  # module name -> LoRA layer; replaced, never mutated
        self._stacks: dict[str, _Stack] = {}  # module name -> its stack (LoRA Linear layers only)
        self._slots: dict[str, int] = {}  # stacked adapter -> slot; slot 0 stays zeros (base rows)
        self._free: list[int] = []
        self._capacity = 1
        self._rank = 1
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        if hasattr(model, "peft_config"):  # LoRA layers wrapped up front (the int8 base): patch them now
            self._rehook()

    @property
    def peft(self) -> bool:
        return bool(self.adapters) or hasattr(self.model, "peft_config")

    def _causal_lm(self) -> Any:
        # not get_base_model(): it reads the active adapter's config, stale once the last adapter is deleted
        from peft import PeftModel

        return self.model.base_model.model if isinstance(self.model, PeftModel) else self.model

    # ------------------------------------------------------------------ adapters
    def load(self, key: str, path: Path) -> None:
        from peft import PeftModel

        if not hasattr(self.model, "peft_config"):
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=key, is_trainable=False)
        else:
            self.model.load_adapter(str(path), adapter_name=key, is_trainable=False)
        self.model.eval()
        self.adapters.add(key)
        self._rehook()
        self._cast(key)
        self._stack(key)

    def prepare(self, path: Path) -> PreparedAdapter | None:
        """Build the adapter's modules without touching the model (safe in any thread).

        None when the fast path does not apply (first adapter, non-plain config, modules without a
        LoRA layer yet): then `load` must be used, in the engine thread.
        """
        from peft import LoraConfig
        from peft.tuners.lora.layer import Linear as LoraLinear

        layers = self._layers
        if not layers:
            return None
        raw = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
        if raw.get("peft_type") != "LORA":
            return None
        config = LoraConfig.from_pretrained(str(path))
        config.inference_mode = True
        if any(getattr(config, name, None) for name in _NOT_PLAIN):
            return None
        if next(iter(layers.values())).resolve_lora_variant(config=config) is not None:
            return None
        # read, not mmap'd: safetensors' load_file/safe_open keep ~60 bytes per tensor per call for good
        # (safetensors 0.8.0; 15 KB per load of a bundled adapter), which every register/remove cycle added up
        weights = load_safetensors((Path(path) / "adapter_model.safetensors").read_bytes())
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for name, tensor in weights.items():
            suffix = next((s for s in _WEIGHT_SUFFIXES if name.endswith(s)), None)
            if suffix is None:
                return None
            pairs.setdefault(name[: -len(suffix)], {})[suffix[1:7]] = tensor
        r, alpha = int(config.r), float(config.lora_alpha)
        scaling = alpha / math.sqrt(r) if config.use_rslora else alpha / r
        built: dict[str, tuple[nn.Module, nn.Module]] = {}
        for name, pair in pairs.items():
            layer = layers.get(name)
            a, b = pair.get("lora_A"), pair.get("lora_B")
            if not isinstance(layer, LoraLinear) or a is None or b is None:
                return None
            if a.shape != (r, layer.in_features) or b.shape != (layer.out_features, r):
                return None
            built[name] = (self._linear(a), self._linear(b))
        return PreparedAdapter(config=config, layers=built, r=r, alpha=alpha, scaling=scaling)

    def _linear(self, weight: torch.Tensor) -> nn.Module:
        module = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
        module.weight = nn.Parameter(weight.to(dtype=self.lora_dtype, device=self.device), requires_grad=False)
        return module.eval()

    def attach(self, key: str, prepared: PreparedAdapter) -> None:
        """Insert prepared modules into the model (engine thread; no forward may run meanwhile)."""
        if key in self.model.peft_config:
            raise ValueError(f"adapter '{key}' is already loaded")
        self.model.peft_config[key] = prepared.config
        try:
            for name, (lora_a, lora_b) in prepared.layers.items():
                layer = self._layers[name]
                layer.r[key] = prepared.r
                layer.lora_alpha[key] = prepared.alpha
                layer.scaling[key] = prepared.scaling
                layer.use_rslora[key] = bool(prepared.config.use_rslora)
                layer.use_dora[key] = False
                layer.lora_bias[key] = False
                layer.lora_dropout[key] = nn.Identity()
                layer.lora_A[key] = lora_a
                layer.lora_B[key] = lora_b
            self.adapters.add(key)
            self._stack(key)
        except BaseException:
            self.discard(key)
            raise

    def discard(self, key: str) -> None:
        """Remove an adapter, including one whose load failed half-way."""
        self._unstack(key)
        if hasattr(self.model, "peft_config") and key in self.model.peft_config:
            if key in self.model.active_adapters:
                self.model.delete_adapter(key)  # PEFT also picks a new active adapter
            else:
                self._detach(key)
        if key not in self.adapters:
            self._rehook()  # a failed PEFT load may have wrapped new modules; they need the row-aware forward
        self.adapters.discard(key)

    def _detach(self, key: str) -> None:
        """PEFT's delete_adapter without its walk over every module of the model."""
        del self.model.peft_config[key]
        for layer in self._layers.values():
            for attr in (*layer.adapter_layer_names, *layer.other_param_names, "lora_variant"):
                holder = getattr(layer, attr, None)
                if holder is not None and key in holder:
                    del holder[key]

    def _cast(self, key: str) -> None:
        """Keep LoRA weights in `lora_dtype`: a fp32 adapter on a bf16 GPU base would upcast every row."""
        for layer in self._layers.values():
            for holder in (layer.lora_A, layer.lora_B, layer.lora_embedding_A, layer.lora_embedding_B):
                if key in holder:
                    holder[key].to(dtype=self.lora_dtype, device=self.device)

    def _rehook(self) -> None:
        """Give every LoRA layer (new ones too, after PEFT's loader wrapped more modules) the row-aware forward."""
        from peft.tuners.lora import LoraLayer
        from peft.tuners.lora.layer import Linear as LoraLinear

        named = {name: m for name, m in self.model.named_modules() if isinstance(m, LoraLayer)}
        for name, layer in named.items():
            if not isinstance(layer.__dict__.get("forward"), functools.partial):
                layer.__dict__["forward"] = functools.partial(self._forward, name, layer)  # this instance only
            if isinstance(layer, LoraLinear) and name not in self._stacks:
                in_features, out_features = layer.in_features, layer.out_features
                if in_features is None or out_features is None:
                    continue  # not a Linear under the LoRA layer: PEFT's forward serves it
                self._stacks[name] = _Stack(
                    in_features, out_features, self._capacity, self._rank, self.lora_dtype, self.device
                )
        self._layers = named

    # ------------------------------------------------------------------ stacks
    def _stack(self, key: str) -> None:
        """Copy a loaded adapter into the stacks and make its PEFT modules views of them."""
        parts = self._stack_parts(key)
        if parts is None:
            logger.info("adapter %s is served by PEFT's mixed-batch forward (not a plain LoRA on Linear layers)", key)
            return
        rank = max((a.shape[0] for a, _, _ in parts.values()), default=1)
        if not self._free or rank > self._rank:
            self._resize(self._capacity * (1 if self._free else 2), max(rank, self._rank))
        slot = self._free.pop(0)
        for name, stack in self._stacks.items():
            a, b, scaling = parts.get(name, (None, None, 0.0))
            stack.write(slot, key, a, b, scaling)
        self._slots[key] = slot
        self._views(key)

    def _stack_parts(self, key: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]] | None:
        from peft.tuners.lora.layer import Linear as LoraLinear

        config = self.model.peft_config.get(key)
        if config is None or any(getattr(config, name, None) for name in _NOT_STACKABLE):
            return None
        parts: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        for name, layer in self._layers.items():
            holders = [getattr(layer, attr, {}) for attr in layer.adapter_layer_names]
            if not any(key in holder for holder in holders):
                continue
            if not isinstance(layer, LoraLinear) or key not in layer.lora_A or key in layer.lora_variant:
                return None
            if layer.use_dora.get(key) or layer.lora_bias.get(key) or getattr(layer, "fan_in_fan_out", False):
                return None
            lora_a, lora_b = layer.lora_A[key], layer.lora_B[key]
            if not isinstance(lora_a, nn.Linear) or not isinstance(lora_b, nn.Linear) or lora_b.bias is not None:
                return None
            parts[name] = (lora_a.weight.detach(), lora_b.weight.detach(), float(layer.scaling[key]))
        return parts

    def _resize(self, capacity: int, rank: int) -> None:
        self._free.extend(range(self._capacity, capacity))
        self._stacks = {name: stack.resized(capacity, rank) for name, stack in self._stacks.items()}
        self._capacity, self._rank = capacity, rank
        for key in self._slots:
            self._views(key)

    def _views(self, key: str) -> None:
        slot = self._slots[key]
        for name, stack in self._stacks.items():
            if key in stack.keys:
                layer = self._layers[name]
                r = layer.r[key]
                layer.lora_A[key].weight = nn.Parameter(stack.a[slot, :r], requires_grad=False)
                layer.lora_B[key].weight = nn.Parameter(stack.b[slot, :, :r], requires_grad=False)

    def _unstack(self, key: str) -> None:
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        for stack in self._stacks.values():
            if key in stack.keys:
                stack.write(slot, key, None, None, 0.0)
        self._free.append(slot)
        self._free.sort()

    def _forward(self, name: str, layer: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        rows = self._rows
        peft_forward = type(layer).forward
        if rows is None:  # not a call from logits(): PEFT as it is
            plain: torch.Tensor = peft_forward(layer, x, *args, **kwargs)
            return plain
        stack = self._stacks.get(name)
        if rows.peft or stack is None or x.dim() != 3 or args or kwargs:
            mixed: torch.Tensor = peft_forward(layer, x, *args, adapter_names=rows.names, **kwargs)
            return mixed
        result: torch.Tensor = layer.base_layer(x)
        if (rows.slot == 0 and rows.slots is None) or not stack.keys:
            return result
        x = x.to(stack.a.dtype)
        if rows.slots is None:  # every row on one adapter: two plain matmuls over all rows
            lora = F.linear(F.linear(x, stack.a[rows.slot]), stack.b[rows.slot]).mul_(stack.scale[rows.slot])
        elif rows.mask is not None:  # few slots: x through every slot's A, other slots masked, one fused B
            lora = F.linear(F.linear(x, stack.a.view(-1, stack.a.shape[2])).mul_(rows.mask), stack.fused_b())
        else:  # BGMV: every row's A and B gathered by slot, two bmm
            a = stack.a.index_select(0, rows.slots)
            b = stack.b.index_select(0, rows.slots)
            lora = torch.bmm(torch.bmm(x, a.transpose(1, 2)), b.transpose(1, 2))
            lora.mul_(stack.scale.index_select(0, rows.slots).view(-1, 1, 1))
        return (result + lora).to(result.dtype)

    def _rows_for(self, names: list[str]) -> _Rows | None:
        if not self._layers:
            return None
        stacked = self.use_stacks and all(name == BASE_ROW or name in self._slots for name in names)
        if not stacked:
            return _Rows(names=names, slots=None, slot=0, peft=True, mask=None)
        slots = [0 if name == BASE_ROW else self._slots[name] for name in names]
        if all(slot == slots[0] for slot in slots):
            return _Rows(names=names, slots=None, slot=slots[0], peft=False, mask=None)
        index = torch.tensor(slots, device=self.device)
        if self._capacity * self._rank > MASKED_COLUMNS:
            return _Rows(names=names, slots=index, slot=-1, peft=False, mask=None)
        mask = torch.zeros(len(slots), self._capacity, self._rank, dtype=self.lora_dtype, device=self.device)
        mask[torch.arange(len(slots), device=self.device), index] = 1
        return _Rows(names=names, slots=index, slot=-1, peft=False, mask=mask.view(len(slots), 1, -1))

    # ------------------------------------------------------------------ forward
    def logits(  # fmt: skip
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        names: list[str],
        shortlisted: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next-token logits [rows, vocab]; row i uses adapter names[i] (BASE_ROW for none). With a shortlisted
        head (self.head), the rows `shortlisted` marks (a bool each; None: all) are scored by it."""
        causal_lm = self._causal_lm()
        self._rows = self._rows_for(names)
        try:
            out = causal_lm.model(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                cache=cache,
                use_cache=True,
            )
            hidden = out.last_hidden_state[:, -1, :].contiguous()
            lm_head, head = causal_lm.lm_head, self.head
            # an adapter with LoRA on the lm_head: PEFT's product, each row with its own adapter's (or none)
            if head is None or getattr(lm_head, "lora_A", None):
                logits: torch.Tensor = lm_head(hidden)
            else:
                logits = head(hidden, shortlisted)
        finally:
            self._rows = None
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits
