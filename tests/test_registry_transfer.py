"""`switchboard registry export|import|migrate`: a one-process registry moves to PostgreSQL whole."""

from __future__ import annotations

import json
from pathlib import Path

from switchboard.cli import main
from switchboard.experiments import Experiment
from switchboard.registry import AdapterRef, Registry
from switchboard.registry.postgres import PostgresStore
from switchboard.registry.store import JsonStore


def test_json_registry_moves_to_postgres_and_back(tmp_path: Path, postgres_url: str, capsys):
    source = Registry(JsonStore(tmp_path / "state"))
    source.add("sales", Path("/shared/a"), pinned=True)
    source.add("sales", Path("/shared/b"), alias="prod")
    source.set_alias("prod", "sales@v1")
    source.set_experiment("exp", Experiment({"sales@v1": 1.0, "sales@v2": 1.0}))
    export = tmp_path / "registry-export.json"
    assert main(["registry", "export", "--state-dir", str(tmp_path / "state"), "--out", str(export)]) == 0
    assert main(["registry", "migrate", "--registry", postgres_url]) == 0
    assert main(["registry", "import", str(export), "--registry", postgres_url]) == 0
    moved = Registry(PostgresStore(postgres_url))
    assert moved.describe() == source.describe()
    assert moved.aliases() == {"prod": "sales@v1"} and moved.experiments() == source.experiments()
    assert moved.entry(AdapterRef("sales", "v1")).pinned
    # a registry that is not empty is kept unless --replace
    capsys.readouterr()
    assert main(["registry", "import", str(export), "--registry", postgres_url]) == 1
    assert "not empty" in capsys.readouterr().err
    # and back: PostgreSQL -> stdout -> a new JSON registry
    assert main(["registry", "export", "--registry", postgres_url]) == 0
    dumped = capsys.readouterr().out
    (tmp_path / "dump.json").write_text(dumped)
    assert json.loads(dumped)["format"] == 1
    assert main(["registry", "import", str(tmp_path / "dump.json"), "--state-dir", str(tmp_path / "again")]) == 0
    assert Registry(JsonStore(tmp_path / "again")).describe() == source.describe()
    moved.add("sales", Path("/shared/c"))  # versions keep counting after a move
    assert moved.current("sales") == AdapterRef("sales", "v3")


def test_import_refuses_a_file_that_is_not_a_registry(tmp_path: Path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"adapters": {}}')
    assert main(["registry", "import", str(bad), "--state-dir", str(tmp_path / "s")]) == 2
    assert "unknown registry format" in capsys.readouterr().err
