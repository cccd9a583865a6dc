"""The adapters the benchmarks make (`harness.adapters`): real PEFT LoRA adapters with random weights for any base
model, made in a child process and kept under a root dir that can serve as a cache."""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def make_adapters(model: str, out: Path, names: Sequence[str]) -> None:
    """Real LoRA adapters (q/k/v/o, r=8; seed = index in `names`) with random B scaled down, so outputs stay
    plausible text."""
    import torch
    from peft import LoraConfig, get_peft_model
    from switchboard.config import load_settings
    from switchboard.models import resolve_model_dir
    from transformers import AutoModelForCausalLM

    settings = load_settings(None, model=model)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_dir(settings.model, settings.cache_dir))
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        config = LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False
        )
        peft_model = get_peft_model(base, config)
        with torch.no_grad():
            for pname, param in peft_model.named_parameters():
                if "lora_B" in pname:
                    param.mul_(0.05)
        peft_model.save_pretrained(out / name)
        base = peft_model.unload()  # drop the LoRA layers again before the next seed


def adapters(model: str, root: Path, names: Sequence[str]) -> dict[str, Path]:
    """The adapters `names` under `root`, made unless all are there already (a cache): `make_adapters` in a child
    process, which keeps torch and the model out of the client process."""
    dirs = {name: root / name for name in names}
    if not all((d / "adapter_config.json").is_file() for d in dirs.values()):
        started = time.perf_counter()
        maker = multiprocessing.get_context("spawn").Process(target=make_adapters, args=(model, root, tuple(names)))
        maker.start()
        maker.join()
        if maker.exitcode != 0:
            raise RuntimeError(f"making the adapters failed (exit code {maker.exitcode})")
        print(f"made {len(names)} adapters in {time.perf_counter() - started:.1f}s under {root}", file=sys.stderr)
    return dirs
