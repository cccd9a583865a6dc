"""The README's examples are files, and they run against a real server."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
from pathlib import Path

from .conftest import Server

REPO = Path(__file__).resolve().parents[1]


def test_python_example_runs(tiny_server: Server):
    main = runpy.run_path(str(REPO / "docs" / "examples" / "chat_client.py"))["main"]
    assert isinstance(main(tiny_server.v1), str)


def test_curl_example_runs(tiny_server: Server):
    out = subprocess.run(
        [str(REPO / "docs" / "examples" / "curl_chat.sh"), tiny_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout)["object"] == "chat.completion"


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    assert "make serve" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


def _api_table_fields() -> dict[str, list[str]]:
    """Rows of docs/api.md's request-field table: field -> [endpoint, hf, vllm, notes]."""
    text = (REPO / "docs" / "api.md").read_text()
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            for name in re.findall(r"`([a-z_]+)`", cells[0]):
                rows[name] = cells[1:]
    return rows


def test_api_doc_lists_every_request_field_with_its_status_per_engine():
    from switchboard.api.schemas import IGNORED, REFUSED, ChatCompletionRequest, CompletionRequest

    rows = _api_table_fields()
    for schema, endpoint in ((ChatCompletionRequest, "chat"), (CompletionRequest, "completions")):
        for field in schema.model_fields:
            assert field in rows, f"docs/api.md: add `{field}` to the request-field table"
            where, hf, vllm, _ = rows[field]
            assert where in (endpoint, "both"), f"docs/api.md: `{field}` is a {endpoint} field, the table says {where}"
            expected = "ignored" if field in IGNORED else "400" if field in REFUSED else "honoured"
            assert hf.startswith(expected) and vllm.startswith(expected), f"docs/api.md: `{field}` is {expected}"
