"""The README's examples are files, and they run against a real server."""

from __future__ import annotations

import json
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
