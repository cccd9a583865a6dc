"""Training data: JSONL (OpenAI chat `messages`, or instruction/input/output) and CSV, checked row by
row, rendered through the base model's chat template with loss only on the assistant's replies."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = {"system", "user", "assistant"}


class DataError(Exception):
    """The data cannot be used; the message says which rows and why."""


@dataclass
class BadRow:
    file: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Example:
    messages: list[dict[str, str]]
    source: str  # file:line
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


def _from_record(record: Any) -> list[dict[str, str]]:
    """A row as chat messages; raises ValueError naming what is wrong."""
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object per line")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        out = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise ValueError(f"message {i}: role must be one of {sorted(ROLES)}")
            if not isinstance(m.get("content"), str) or not m["content"].strip():
                raise ValueError(f"message {i} ({m.get('role')}): empty or missing content")
            out.append({"role": m["role"], "content": m["content"]})
        if out[-1]["role"] != "assistant":
            raise ValueError("the last message must be the assistant's answer")
        return out
    instruction = record.get("instruction") or record.get("prompt") or record.get("question")
    answer = record.get("output") or record.get("response") or record.get("answer")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("missing 'instruction' (or 'messages')")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError("empty or missing 'output'")
    extra = record.get("input")
    user = f"{instruction.strip()}\n\n{extra.strip()}" if isinstance(extra, str) and extra.strip() else instruction
    messages = []
    if isinstance(record.get("system"), str) and record["system"].strip():
        messages.append({"role": "system", "content": record["system"]})
    return [*messages, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def read_file(path: Path) -> tuple[list[Example], list[BadRow]]:
    examples: list[Example] = []
    bad: list[BadRow] = []
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    examples.append(Example(_from_record(json.loads(line)), f"{path}:{line_no}"))
                except json.JSONDecodeError as exc:
                    bad.append(BadRow(path, line_no, f"not valid JSON ({exc.msg})"))
                except ValueError as exc:
                    bad.append(BadRow(path, line_no, str(exc)))
    elif path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                line_no = reader.line_num
                try:
                    examples.append(Example(_from_record({k: v for k, v in row.items() if k}), f"{path}:{line_no}"))
                except ValueError as exc:
                    bad.append(BadRow(path, line_no, str(exc)))
    else:
        raise DataError(f"{path}: unsupported data file type {path.suffix!r}; use .jsonl or .csv")
    return examples, bad


def tokenize(example: Example, tokenizer: Any, max_seq_len: int) -> str | None:
    """Fill input_ids/labels (labels -100 outside assistant replies); returns a reason if unusable."""
    out = tokenizer.apply_chat_template(
        example.messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(out["input_ids"])
    mask = list(out["assistant_masks"])
    if not any(mask):
        return "the chat template marks no assistant tokens (it needs {% generation %} blocks)"
    if len(ids) > max_seq_len:
        return f"{len(ids)} tokens, over max_seq_len {max_seq_len}"
    example.input_ids = ids
    example.labels = [t if m else -100 for t, m in zip(ids, mask, strict=True)]
    return None


def files_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in sorted(files):
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


@dataclass
class Dataset:
    train: list[Example]
    eval: list[Example]
    bad: list[BadRow]
    files: list[Path]
    data_hash: str

    def summary(self) -> dict[str, Any]:
        return {
            "files": [str(f) for f in self.files],
            "sha256": self.data_hash,
            "train_rows": len(self.train),
            "eval_rows": len(self.eval),
            "bad_rows": len(self.bad),
        }


def load_dataset(
    files: list[Path],
    tokenizer: Any,
    max_seq_len: int,
    eval_split: float,
    seed: int,
    max_bad_fraction: float,
    eval_file: Path | None = None,
) -> Dataset:
    """Read, check and tokenize every row; stop (DataError) if too many are bad."""
    if not files:
        raise DataError("no data files found (*.jsonl or *.csv in train_data_dir, or metadata_path)")
    rows: list[Example] = []
    bad: list[BadRow] = []
    for f in files:
        got, wrong = read_file(f)
        rows += got
        bad += wrong
    eval_rows: list[Example] = []
    if eval_file is not None:
        eval_rows, wrong = read_file(eval_file)
        bad += wrong
    read_failures = len(bad)
    for ex in rows + eval_rows:
        reason = tokenize(ex, tokenizer, max_seq_len)
        if reason:
            file, _, line = ex.source.rpartition(":")
            bad.append(BadRow(Path(file), int(line), reason))
    usable = [ex for ex in rows if ex.input_ids]
    total = len(rows) + len(eval_rows) + read_failures
    eval_rows = [ex for ex in eval_rows if ex.input_ids]
    if not usable:
        raise DataError("no usable training rows:\n  " + "\n  ".join(map(str, bad[:20])))
    if bad and len(bad) / max(total, 1) > max_bad_fraction:
        shown = "\n  ".join(map(str, bad[:20]))
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DataError(
            f"{len(bad)} of {total} rows are bad (more than max_bad_fraction={max_bad_fraction}); "
            f"fix them or raise max_bad_fraction:\n  {shown}{more}"
        )
    if eval_file is None and eval_split > 0 and len(usable) >= 2:
        order = list(range(len(usable)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(usable) * eval_split))
        eval_rows = [usable[i] for i in sorted(order[:n_eval])]
        usable = [usable[i] for i in sorted(order[n_eval:])]
    all_files = files + ([eval_file] if eval_file else [])
    return Dataset(usable, eval_rows, bad, all_files, files_hash(all_files))
