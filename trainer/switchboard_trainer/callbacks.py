"""Trainer callbacks and the checkpoint rules: complete-only checkpoints, samples, a readable log."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.integrations import TensorBoardCallback

logger = logging.getLogger(__name__)

COMPLETE = ".complete"  # written last into a checkpoint dir: a dir without it is a crash leftover


class CheckpointTrainer(Trainer):
    """A Trainer whose checkpoints count only once complete, so a kill mid-save is never resumed from."""

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        if folder.is_dir():
            marker = folder / COMPLETE
            marker.write_text(json.dumps({"step": self.state.global_step}))


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first; incomplete leftovers are deleted."""
    found: list[Path] = []
    if not checkpoint_dir.is_dir():
        return found
    for path in checkpoint_dir.glob("checkpoint-*"):
        if not path.is_dir():
            continue
        if (path / COMPLETE).is_file():
            found.append(path)
        else:
            logger.warning("removing incomplete checkpoint %s (interrupted while saving)", path)
            shutil.rmtree(path, ignore_errors=True)
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


class SampleCallback(TrainerCallback):
    """Answer the config's sample prompts at every save, greedily, into the log and TensorBoard."""

    def __init__(self, tokenizer: Any, prompts: list[str], max_new_tokens: int = 64) -> None:
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.max_new_tokens = max_new_tokens
        self.trainer: Trainer | None = None

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self.prompts or model is None:
            return
        was_training = model.training
        model.eval()
        lines = []
        with torch.no_grad():
            for prompt in self.prompts:
                ids = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}],
                    add_generation_prompt=True,
                    return_tensors="pt",
                    return_dict=True,
                )
                ids = {k: v.to(model.device) for k, v in ids.items()}
                out = model.generate(
                    **ids, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
                )
                answer = self.tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)
                lines.append(f"**{prompt}**\n\n{answer.strip()}")
                print(f"[sample @ step {state.global_step}] {prompt!r} -> {answer.strip()!r}", flush=True)
        if was_training:
            model.train()
        writer = self._tb_writer()
        if writer is not None:
            writer.add_text("samples", "\n\n---\n\n".join(lines), state.global_step)
            writer.flush()

    def _tb_writer(self) -> Any:
        if self.trainer is None:
            return None
        for cb in self.trainer.callback_handler.callbacks:
            if isinstance(cb, TensorBoardCallback):
                return cb.tb_writer
        return None
