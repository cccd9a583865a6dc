"""One base causal LM plus many LoRA adapters, each batch row with its own adapter.

The adapters live in one PEFT model. Which adapter each row uses is handed to every LoRA layer by a
forward pre-hook registered once per layer (PEFT's own `adapter_names` mechanism registers and
removes hooks on every module at every forward, which costs milliseconds per decode step).
Logits are computed for the last position only, from a contiguous [rows, hidden] tensor.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch


class MultiLoraModel:
    def __init__(self, model: Any, dtype: torch.dtype, device: torch.device) -> None:
        self.model = model  # the causal LM, or the PeftModel wrapping it once an adapter is loaded
        self.dtype = dtype
        self.device = device
        self.adapters: dict[str, Path] = {}
        self._row_names: list[str] | None = None
        self._hooks: list[Any] = []
        self._softcap = getattr(model.config, "final_logit_softcapping", None)

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

    def discard(self, key: str) -> None:
        """Remove an adapter, including one whose load failed half-way."""
        if hasattr(self.model, "peft_config") and key in self.model.peft_config:
            self.model.delete_adapter(key)
        self.adapters.pop(key, None)
        self._rehook()

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
        self._hooks = [
            layer.register_forward_pre_hook(self._inject_rows, with_kwargs=True) for layer in self._lora_layers()
        ]

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
