"""Schemathesis against the real server's own /openapi.json (tiny model, admin key): every operation, the
chat and completion endpoints included, with generated valid and invalid input. No answer may be a server
error, and every status, media type, header and body must be what the document says.

Deterministic (`--generation-deterministic`: the same cases every run, no example database) and bounded
(EXAMPLES per operation; the server's context window of 64 tokens keeps each generation short), so CI reruns
the same cases in ~2 minutes on 2 AVX2 cores.
Rerun by hand with more: `SWITCHBOARD_FUZZ_EXAMPLES=200 pytest tests/test_fuzz.py -s` (docs/api.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Server, ServerFactory

ADMIN_KEY = "fuzz-admin-key"
EXAMPLES = int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "25"))
# Values the generator draws most of the time, so generated requests reach the engine and the registry
# instead of stopping at "unknown model" (the rest are still random); experiments always get real variants,
# so their report, stop, conclude and delete run too.
CONFIG = """
[dictionaries.models]
values = ["alpha", "beta", "gamma", "alpha@v1"]
[dictionaries.refs]
values = ["alpha", "beta@v1", "nobody"]
[dictionaries.experiments]
values = ["fuzz-ab"]
[dictionaries.aliases]
values = ["prod"]

[parameters]
"body.model" = { dictionary = "models", probability = 0.9 }
"body.target" = { dictionary = "refs", probability = 0.8 }
"body.winner" = { dictionary = "refs", probability = 0.8 }
"path.name" = { dictionary = "experiments", probability = 0.8 }
"path.alias" = { dictionary = "aliases", probability = 0.8 }
"body.variants" = { "alpha@v1" = 1, "beta@v1" = 1 }
"""
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


@pytest.fixture(scope="module")
def fuzz_server(serve_module: ServerFactory, tiny_adapters: dict[str, Path], root: Path) -> Server:
    return serve_module(adapters=tiny_adapters, adapter_root=root, admin_key=ADMIN_KEY, max_model_len=64)


def run_schemathesis(server: Server, out: Path) -> dict:
    """`st run` as CI would run it; returns its JSON report."""
    report = out / "report.json"
    config = out / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        sys.executable,  # `st`, from this interpreter's packages
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(EXAMPLES),
        "--generation-deterministic",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--header",
        f"Authorization: Bearer {ADMIN_KEY}",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("fuzz_hooks.py"))}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=out, env=env)
    print(done.stdout[-6000:], done.stderr[-2000:])
    assert report.is_file(), f"schemathesis wrote no report (exit {done.returncode})"
    return json.loads(report.read_text())


def summary(report: dict) -> tuple[str, int, int, list[str]]:
    """The line for the log and CI's closing note, the server errors and schema violations, and every failure."""
    groups = report.get("failures", [])
    titles = [f"{g['title']} ({g['count']}x, {g['code']}): {', '.join(g['operations'])}" for g in groups]
    server_errors = sum(g["count"] for g in groups if g["type"].endswith("ServerError"))
    violations = sum(g["count"] for g in groups) - server_errors
    line = (
        f"schemathesis: {report['operations']['tested']} operations, {report['test_cases']['generated']} examples, "
        f"{server_errors} server errors, {violations} schema violations"
    )
    return line, server_errors, violations, titles


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    fuzz_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    report = run_schemathesis(fuzz_server, tmp_path)
    line, server_errors, violations, failures = summary(report)
    with capsys.disabled():  # the figures reach CI's log even when the test passes
        print(f"\n{line}")
    assert report["operations"]["tested"] == report["operations"]["total"] >= 22, report["operations"]
    assert not report["errors"], report["errors"]
    assert server_errors == 0 and violations == 0, "\n".join([line, *failures])
    assert report["exit_code"] == 0, line
    # the generator reached the engine: some chat and completion requests were served
    served = report["valid_rates"]
    for op in ("POST /v1/chat/completions", "POST /v1/completions"):
        assert sum(phase["accepted"] for phase in served[op].values()) >= 5, served[op]
