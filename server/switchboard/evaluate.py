"""`switchboard eval`: base model vs each scenario adapter on the held-out dialogues.

Two measures per (model, scenario): the mean loss (and perplexity) of the reference answers under
teacher forcing, and the share of rubric checks passed by greedy answers (the scenario's conventions,
checked automatically by adapters/datasets/rubric.py). Greedy answers come from Switchboard's own
engine, every variant batched together, with the sampling settings given (penalties; greedy always). A third
measure, `degenerate`, is the share of answers that loop or drift into a stray script (see `degenerate`).
Writes a markdown report (docs/scenarios.md).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import math
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .engine.base import GenerationRequest, SamplingParams
from .engine.fp16_weights import WeightsMode
from .engine.lm_head import HeadMode
from .engine.lora_stacks import BASE_ROW

logger = logging.getLogger(__name__)

SCENARIOS = ("pre-sales", "after-sales", "marketing")

# --- degenerate answers ----------------------------------------------------------------------------------
# Scripts by Unicode block; only letters (category L*) are classified, digits, punctuation and symbols never.
_HAN_BLOCKS = (
    (0x3005, 0x3007),  # 々 〆 〇 (CJK Symbols and Punctuation)
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x3134F),  # Extensions B-G and the Compatibility Supplement
)
_LATIN_BLOCKS = (
    (0x0041, 0x007A),  # Basic Latin letters
    (0x00C0, 0x024F),  # Latin-1 Supplement, Latin Extended-A and -B letters
    (0x1E00, 0x1EFF),  # Latin Extended Additional
    (0xFF21, 0xFF5A),  # Fullwidth Latin letters
)
_CJK_UNIT = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"  # kana, Han, hangul: one unit each
_UNITS = re.compile(f"[{_CJK_UNIT}]|[^\\W_{_CJK_UNIT}]+")
REPEAT_N, REPEAT_TIMES = 4, 3
STRAY_LATIN_LETTERS = 4


def script(ch: str) -> str:
    """'latin', 'han' or 'other' for a letter (kana, hangul, Cyrillic, cuneiform, …); '' for a non-letter."""
    if not unicodedata.category(ch).startswith("L"):
        return ""
    code = ord(ch)
    if any(lo <= code <= hi for lo, hi in _LATIN_BLOCKS):
        return "latin"
    if any(lo <= code <= hi for lo, hi in _HAN_BLOCKS):
        return "han"
    return "other"


def repeated_ngram(answer: str, n: int = REPEAT_N, times: int = REPEAT_TIMES) -> str | None:
    """The first n-gram of units seen `times` times (overlaps count), None when none is. A unit is one
    CJK character (Han, kana, hangul) or one word of any other script or digits; case-insensitive."""
    units = _UNITS.findall(answer.lower())
    counts: Counter[tuple[str, ...]] = Counter()
    for i in range(len(units) - n + 1):
        gram = tuple(units[i : i + n])
        counts[gram] += 1
        if counts[gram] >= times:
            return " ".join(gram)
    return None


def stray_script(question_language: str | None, answer: str) -> str | None:
    """The first stray letter or word of `answer`, None when none is. Answering English ('en'): any letter
    that is not Latin (Han, kana, hangul, Cyrillic, cuneiform, …). Answering Chinese ('zh'): any letter
    neither Han nor Latin, or a Latin word of 4+ letters starting lower-case (codes, sizes, units and names
    such as WARM30, XL, cm, PayPal are legitimate). No language (a bare order number): not Han nor Latin."""
    allowed = {"en": {"latin"}, "zh": {"latin", "han"}}.get(question_language or "", {"latin", "han"})
    for ch in answer:
        kind = script(ch)
        if kind and kind not in allowed:
            return ch
    if question_language == "zh":
        latin = "".join(c if script(c) == "latin" else " " for c in answer)
        for word in latin.split():
            if len(word) >= STRAY_LATIN_LETTERS and word[0].islower():
                return word
    return None


def degenerate(question_language: str | None, answer: str) -> str | None:
    """Why `answer` is degenerate ('empty', 'repeats …', 'stray …'), None when it is not."""
    if not answer.strip():
        return "empty"
    if (gram := repeated_ngram(answer)) is not None:
        return f"repeats {gram!r}"
    if (stray := stray_script(question_language, answer)) is not None:
        return f"stray {stray!r}"
    return None


@dataclass
class Cell:
    loss: float = 0.0
    checks: int = 0
    passed: int = 0
    answers: int = 0
    degenerate: int = 0
    samples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ppl(self) -> float:
        return math.exp(self.loss)

    @property
    def rubric(self) -> float:
        return self.passed / self.checks if self.checks else 0.0

    @property
    def degenerate_share(self) -> float:
        return self.degenerate / self.answers if self.answers else 0.0


def load_rubric(datasets: Path) -> Any:
    spec = importlib.util.spec_from_file_location("scenario_rubric", datasets / "rubric.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def question_language(rubric: Any, question: str) -> str | None:
    """'zh' or 'en' as the rubric decides; None for a question without words (a bare order number)."""
    words = re.sub(r"LL\s?\d{8}", "", question, flags=re.IGNORECASE)
    return rubric.language(question) if re.search(r"[^\W\d_]", words) else None


def sampling_for(variant: str, sampling: dict[str, Any], defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The sampling fields of one variant's rows: the adapter's configured defaults, then `sampling` on top."""
    return {**defaults.get(variant, {}), **sampling}


def read_heldout(path: Path, limit: int | None) -> list[list[dict[str, str]]]:
    rows = [json.loads(line)["messages"] for line in path.read_text().splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def encode_dialogues(tokenizer: Any, rows: list[list[dict[str, str]]]) -> list[dict[str, list[int]]]:
    """Token ids and assistant-token masks of whole dialogues (the chat template's generation markers)."""
    return [
        tokenizer.apply_chat_template(m, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        for m in rows
    ]


def assistant_loss(logits_of: Any, encoded: list[dict[str, list[int]]]) -> float:
    """Mean cross-entropy per assistant token; `logits_of(ids [1, T])` gives the logits [1, T, vocab]."""
    total, count = 0.0, 0
    for e in encoded:
        ids = torch.tensor([e["input_ids"]])
        labels = torch.tensor([[t if k else -100 for t, k in zip(e["input_ids"], e["assistant_masks"], strict=True)]])
        logits = logits_of(ids)[:, :-1].float()
        target = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += float(loss)
        count += int((target != -100).sum())
    return total / max(count, 1)


def reference_losses(
    model_dir: Path,
    adapters: dict[str, Path],
    dialogues: dict[str, list],
    tokenizer: Any,
) -> dict[tuple[str, str], float]:
    """Mean loss per assistant token of the reference answers, for base and each adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    names = list(adapters)
    for i, name in enumerate(names):
        if i == 0:
            model = PeftModel.from_pretrained(model, str(adapters[name]), adapter_name=name)
        else:
            model.load_adapter(str(adapters[name]), adapter_name=name)
    out: dict[tuple[str, str], float] = {}
    with torch.inference_mode():
        for scenario, rows in dialogues.items():
            encoded = encode_dialogues(tokenizer, rows)
            for variant in ["base", *names]:
                kwargs = {"adapter_names": [BASE_ROW if variant == "base" else variant]} if names else {}
                out[(variant, scenario)] = assistant_loss(
                    lambda ids, kw=kwargs: model(input_ids=ids, **kw).logits, encoded
                )
    return out


async def greedy_answers(
    model_dir: Path,
    adapters: dict[str, Path],
    prompts: list[tuple[str, str, int, list[dict[str, str]]]],
    max_new_tokens: int,
    sampling: dict[str, dict[str, Any]],
    weights: WeightsMode = "auto",
    lm_head: HeadMode = "auto",
) -> dict[tuple[str, str, int], str]:
    """(variant, scenario, index) -> greedy answer, all variants batched by the hf engine; `sampling` gives
    each variant's extra SamplingParams fields (penalties, …)."""
    from .engine.hf import HFEngine

    engine = HFEngine(
        model_dir, model_id="eval", max_batch_size=32, max_queue=100_000, weights=weights, lm_head=lm_head
    )
    engine.load_model()
    for name, path in adapters.items():
        engine.add_adapter_sync(name, path)
    await engine.start()
    semaphore = asyncio.Semaphore(32)

    async def one(variant: str, scenario: str, index: int, messages: list) -> tuple[tuple[str, str, int], str]:
        ids = engine.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        request = GenerationRequest(
            f"{variant}-{scenario}-{index}",
            list(ids),
            SamplingParams(max_tokens=max_new_tokens, **{**sampling.get(variant, {}), "temperature": 0.0}),
            None if variant == "base" else variant,
        )
        async with semaphore:
            text = "".join([out.text async for out in engine.generate(request)])
        return (variant, scenario, index), text.strip()

    try:
        jobs = [one(v, s, i, m) for v, s, i, m in prompts]
        return dict(await asyncio.gather(*jobs))
    finally:
        await engine.shutdown()


def evaluate(
    model: str,
    adapters_dir: Path,
    datasets: Path,
    names: list[str],
    limit: int | None,
    max_new_tokens: int,
    cache_dir: Path,
    sampling: dict[str, Any] | None = None,
    adapter_sampling: dict[str, dict[str, Any]] | None = None,
    losses: bool = True,
    weights: WeightsMode = "auto",
    lm_head: HeadMode = "auto",
) -> tuple[dict[tuple[str, str], Cell], dict[str, Any]]:
    from transformers import AutoTokenizer

    from .models import resolve_model_dir

    started = time.perf_counter()
    model_dir = resolve_model_dir(model, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rubric = load_rubric(datasets)
    adapters = {n: adapters_dir / n for n in names if (adapters_dir / n / "adapter_config.json").is_file()}
    dialogues = {s: read_heldout(datasets / s / "heldout.jsonl", limit) for s in SCENARIOS}
    loss = reference_losses(model_dir, adapters, dialogues, tokenizer) if losses else {}
    logger.info("reference losses in %.0f s", time.perf_counter() - started)
    prompts = [
        (v, s, i, messages[:-1])
        for v in ["base", *adapters]
        for s, dialogue_rows in dialogues.items()
        for i, messages in enumerate(dialogue_rows)
    ]
    per_variant = {v: sampling_for(v, sampling or {}, adapter_sampling or {}) for v in ["base", *adapters]}
    answering = time.perf_counter()
    answers = asyncio.run(greedy_answers(model_dir, adapters, prompts, max_new_tokens, per_variant, weights, lm_head))
    logger.info("%d answers in %.0f s", len(answers), time.perf_counter() - answering)
    cells: dict[tuple[str, str], Cell] = {}
    rows_out: list[dict[str, Any]] = []
    for v in ["base", *adapters]:
        for s, rows in dialogues.items():
            cell = Cell(loss=loss.get((v, s), math.nan))
            for i, messages in enumerate(rows):
                question = messages[-2]["content"]
                checks = rubric.score(s, question, answers[(v, s, i)])
                cell.checks += len(checks)
                cell.passed += sum(bool(x) for x in checks.values())
                cell.answers += 1
                why = degenerate(question_language(rubric, question), answers[(v, s, i)])
                cell.degenerate += why is not None
                rows_out.append({"variant": v, "scenario": s, "question": question, "answer": answers[(v, s, i)]})
                rows_out[-1] |= {"checks": checks, "degenerate": why}
                if i < 2:
                    cell.samples.append((question, answers[(v, s, i)]))
            cells[(v, s)] = cell
    info = {
        "model": model,
        "adapters": list(adapters),
        "heldout": {s: len(r) for s, r in dialogues.items()},
        "sampling": {v: p for v, p in per_variant.items() if p},
        "seconds": round(time.perf_counter() - started),
        "answers": rows_out,
    }
    return cells, info


def describe_sampling(per_variant: dict[str, dict[str, Any]]) -> str:
    """`{'after-sales': {'repetition_penalty': 1.1}}` -> "after-sales: repetition_penalty=1.1"; 'none'."""
    parts = [f"{v}: " + ", ".join(f"{k}={x}" for k, x in p.items()) for v, p in per_variant.items() if p]
    return "; ".join(parts) or "none"


def report(cells: dict[tuple[str, str], Cell], info: dict[str, Any]) -> str:
    variants = ["base", *info["adapters"]]
    lines = [
        "# Scenario adapters vs the base model",
        "",
        f"Held-out dialogues per scenario: {info['heldout']}; model {info['model']}; greedy answers from the "
        f"`hf` engine; generated by `switchboard eval` in {info['seconds']} s.",
        "",
        f"Sampling besides greedy: {describe_sampling(info.get('sampling', {}))}.",
        "",
        "Loss = mean cross-entropy of the reference answers (assistant tokens only); ppl = exp(loss); "
        "rubric = share of the scenario's convention checks passed by the greedy answers "
        "(adapters/datasets/rubric.py); degen = share of answers that are degenerate: empty, a 4-gram of "
        "words or CJK characters repeated 3 times, or a stray script (`switchboard.evaluate.degenerate`).",
        "",
        "| model | " + " | ".join(f"{s} loss / ppl / rubric / degen" for s in SCENARIOS) + " |",
        "|---|" + "---|" * len(SCENARIOS),
    ]
    for v in variants:
        row = [
            f"{c.loss:.3f} / {c.ppl:.1f} / {c.rubric:.0%} / {c.degenerate_share:.0%}"
            for c in (cells[(v, s)] for s in SCENARIOS)
        ]
        lines.append(f"| {v} | " + " | ".join(row) + " |")
    lines += ["", "## Targets", ""]
    for s in SCENARIOS:
        if s not in variants:
            continue
        beats_loss = cells[(s, s)].loss < cells[("base", s)].loss
        beats_rubric = cells[(s, s)].rubric > cells[("base", s)].rubric
        best_own = all(cells[(s, s)].rubric >= cells[(o, s)].rubric for o in SCENARIOS if o in variants)
        lines.append(
            f"- {s}: beats base on loss {'yes' if beats_loss else 'NO'}, on rubric "
            f"{'yes' if beats_rubric else 'NO'}; best rubric among the scenario adapters on its own "
            f"scenario {'yes' if best_own else 'NO'}"
        )
    lines += ["", "## Example answers (greedy)", ""]
    for s in SCENARIOS:
        for v in ["base", s] if s in variants else ["base"]:
            for q, a in cells[(v, s)].samples:
                lines.append(f"- **{s}**, {v}: _{q}_ → {a!r}")
    return "\n".join(lines) + "\n"
