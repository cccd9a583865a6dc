"""One base causal LM plus many LoRA adapters, each batch row with its own adapter.

The adapters live in one PEFT model. Which adapter each row uses is handed to every LoRA layer by a
forward pre-hook registered once per layer (PEFT's own `adapter_names` mechanism registers and
removes hooks on every module at every forward, which costs milliseconds per decode step).
Logits are computed for the last position only, from a contiguous [rows, hidden] tensor.

Loading has a fast path for the common case (a plain LoRA on modules that already carry LoRA layers):
`prepare` reads the weights and builds the A/B modules in any thread without touching the model, and
`attach` only inserts them into the existing layers' dicts - a few hundred dict writes in the engine
thread instead of PEFT's ~100 ms walk over every module. Anything else goes through PEFT's loader.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

logger = logging.getLogger(__name__)

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch

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


@dataclass
class PreparedAdapter:
    """An adapter's LoRA modules, built off the engine thread, ready to be attached."""

    config: Any  # peft.LoraConfig
    layers: dict[str, tuple[nn.Module, nn.Module]]  # module name -> (lora_A, lora_B)
    r: int
    alpha: float
    scaling: float


class MultiLoraModel:
    def __init__(self, model: Any, dtype: torch.dtype, device: torch.device) -> None:
        self.model = model  # the causal LM, or the PeftModel wrapping it once an adapter is loaded
        self.dtype = dtype
        self.device = device
        self.adapters: dict[str, Path] = {}
        self._row_names: list[str] | None = None
        self._hooks: list[Any] = []
        self._layers: dict[str, Any] = {}  # module name -> LoRA Linear layer; replaced, never mutated
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        if hasattr(model, "peft_config"):  # LoRA layers wrapped up front (the int8 base): hook them now
            self._rehook()

    @property
    def peft(self) -> bool:
        return bool(self.adapters) or hasattr(self.model, "peft_config")

    def _causal_lm(self) -> Any:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    # ------------------------------------------------------------------ adapters
    def load(self, key: str, path: Path) -> None:
        from peft import PeftModel

        if not hasattr(self.model, "peft_config"):
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=key, is_trainable=False)
        else:
            self.model.load_adapter(str(path), adapter_name=key, is_trainable=False)
        self._cast(key)
        self.model.eval()
        self.adapters[key] = path
        self._rehook()

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
        weights = load_file(str(Path(path) / "adapter_model.safetensors"), device="cpu")
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
        module.weight = nn.Parameter(weight.to(dtype=self.dtype, device=self.device), requires_grad=False)
        return module.eval()

    def attach(self, key: str, prepared: PreparedAdapter, path: Path) -> None:
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
        except BaseException:
            self.discard(key)
            raise
        self.adapters[key] = path

    def discard(self, key: str) -> None:
        """Remove an adapter, including one whose load failed half-way."""
        if hasattr(self.model, "peft_config") and key in self.model.peft_config:
            if key in self.model.active_adapters:
                self.model.delete_adapter(key)  # PEFT also picks a new active adapter
            else:
                self._detach(key)
        if self.adapters.pop(key, None) is None:
            self._rehook()  # a failed PEFT load may have wrapped new modules; hooks must cover them

    def _detach(self, key: str) -> None:
        """PEFT's delete_adapter without its walk over every module of the model."""
        del self.model.peft_config[key]
        for layer in self._layers.values():
            for attr in (*layer.adapter_layer_names, *layer.other_param_names, "lora_variant"):
                holder = getattr(layer, attr, None)
                if holder is not None and key in holder:
                    del holder[key]

    def _lora_layers(self) -> list[Any]:
        from peft.tuners.lora import LoraLayer

        return [m for m in self.model.modules() if isinstance(m, LoraLayer)]

    def _cast(self, key: str) -> None:
        """Keep LoRA weights in the base dtype: a fp32 adapter on a bf16 base would upcast every row."""
        for layer in self._lora_layers():
            for holder in (layer.lora_A, layer.lora_B, layer.lora_embedding_A, layer.lora_embedding_B):
                if key in holder:
                    holder[key].to(dtype=self.dtype, device=self.device)

    def _rehook(self) -> None:
        for handle in self._hooks:
            handle.remove()
        named = {name: m for name, m in self.model.named_modules() if self._is_lora(m)}
        self._hooks = [layer.register_forward_pre_hook(self._inject_rows, with_kwargs=True) for layer in named.values()]
        self._layers = named

    @staticmethod
    def _is_lora(module: Any) -> bool:
        from peft.tuners.lora import LoraLayer

        return isinstance(module, LoraLayer)

    def _inject_rows(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self._row_names is not None:
            kwargs["adapter_names"] = self._row_names
        return args, kwargs

    # ------------------------------------------------------------------ forward
    def logits(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        names: list[str],
    ) -> torch.Tensor:
        """Next-token logits [rows, vocab]; row i uses adapter names[i] (BASE_ROW for none)."""
        causal_lm = self._causal_lm()
        self._row_names = names if self._hooks else None
        try:
            out = causal_lm.model(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                cache=cache,
                use_cache=True,
            )
        finally:
            self._row_names = None
        hidden = out.last_hidden_state[:, -1, :].contiguous()
        logits = causal_lm.lm_head(hidden)
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits
