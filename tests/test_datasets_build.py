"""The dataset generator (adapters/datasets/build_datasets.py, its dialogues/ code and phrases/ data)
rebuilds the committed scenario datasets byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATASETS = Path(__file__).resolve().parent.parent / "adapters" / "datasets"


def test_generator_rebuilds_the_committed_datasets_byte_for_byte(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, str(DATASETS / "build_datasets.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(DATASETS).as_posix() for p in DATASETS.glob("*/*.jsonl"))
    assert built == committed
    assert len(committed) == 8  # train.jsonl and heldout.jsonl of four scenarios
    for name in committed:
        assert (tmp_path / name).read_bytes() == (DATASETS / name).read_bytes(), f"{name} differs from a fresh build"
