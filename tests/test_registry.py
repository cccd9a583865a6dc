"""The registry's rules and its persistence, without a server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from switchboard.errors import AdapterNotFound, Conflict
from switchboard.experiments import Experiment
from switchboard.registry import AdapterRef, Registry
from switchboard.registry.store import JsonStore, Store


def test_versions_auto_number_and_never_reuse(new_store: Callable[[], Store]):
    reg = Registry(new_store())
    assert reg.add("sales", Path("/a")) == AdapterRef("sales", "v1")
    assert reg.add("sales", Path("/b")) == AdapterRef("sales", "v2")
    reg.remove("sales", "v2")
    assert reg.current("sales") == AdapterRef("sales", "v1")
    assert reg.add("sales", Path("/c")) == AdapterRef("sales", "v3")


def test_aliases_resolve_move_and_roll_back(new_store: Callable[[], Store]):
    reg = Registry(new_store())
    reg.add("sales", Path("/a"))
    reg.add("sales", Path("/b"))
    ref, previous = reg.set_alias("prod", "sales@v1")
    assert (ref, previous) == (AdapterRef("sales", "v1"), None)
    assert reg.lookup("prod") == AdapterRef("sales", "v1")
    reg.set_alias("prod", "sales@v2")
    assert reg.rollback_alias("prod") == AdapterRef("sales", "v1")
    with pytest.raises(Conflict):
        reg.rollback_alias("prod")
    with pytest.raises(AdapterNotFound):
        reg.set_alias("prod", "sales@v9")
    with pytest.raises(Conflict):
        reg.set_alias("sales", "sales@v1")  # aliases and names share one namespace


def test_state_survives_a_new_process(new_store: Callable[[], Store]):
    reg = Registry(new_store())
    reg.add("sales", Path("/a"), pinned=True)
    reg.add("sales", Path("/b"), alias="prod")
    reg.set_experiment("exp", Experiment({"sales@v1": 1.0}))
    again = Registry(new_store())
    assert again.describe() == reg.describe()
    assert again.aliases() == {"prod": "sales@v2"}
    assert again.entry(AdapterRef("sales", "v1")).pinned is True
    assert again.experiment("exp") == reg.experiment("exp")
    assert again.experiment("exp").variants == {"sales@v1": 1.0}


def test_state_files_from_before_the_experiments_section_still_load(tmp_path: Path):
    """Up to 0.3.1 experiments were stored under "extra"; such a file loads with its experiments."""
    old = {
        "format": 1,
        "adapters": {"sales": {"current": "v1", "counter": 1, "versions": {"v1": {"path": "/a", "created": 1.0}}}},
        "aliases": {},
        "alias_history": {},
        "extra": {"experiments": {"exp": {"variants": {"sales@v1": 1}, "sticky": "none", "updated": 2.0}}},
    }
    (tmp_path / "registry.json").write_text(json.dumps(old))
    reg = Registry(JsonStore(tmp_path))
    assert reg.experiment("exp") == Experiment({"sales@v1": 1.0}, "none", 2.0)
    reg.add("sales", Path("/b"))  # the next write stores the experiments in their own section
    data = json.loads((tmp_path / "registry.json").read_text())
    assert "extra" not in data and data["experiments"]["exp"]["sticky"] == "none"


def test_failed_write_changes_nothing(new_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch):
    store = new_store()
    reg = Registry(store)
    reg.add("sales", Path("/a"))

    def broken(state):
        raise OSError("disk full")

    monkeypatch.setattr(store, "save", broken)
    with pytest.raises(OSError):
        reg.add("sales", Path("/b"))
    assert reg.current("sales") == AdapterRef("sales", "v1")
    assert [r for r in reg.refs()] == [AdapterRef("sales", "v1")]


def test_file_is_complete_json_with_no_temp_leftovers(tmp_path: Path):
    reg = Registry(JsonStore(tmp_path))
    for i in range(20):
        reg.add(f"a{i}", Path(f"/x{i}"))
    data = json.loads((tmp_path / "registry.json").read_text())
    assert len(data["adapters"]) == 20 and data["format"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["registry.json"]


def test_the_same_files_again_return_the_current_version(new_store: Callable[[], Store]):
    """A retried registration (same name, identical files) is the version it made, on either store."""
    reg = Registry(new_store())
    assert reg.add("sales", Path("/a"), content="h1") == AdapterRef("sales", "v1")
    assert reg.add("sales", Path("/a-copy"), content="h1") == AdapterRef("sales", "v1")
    assert reg.add("sales", Path("/b"), content="h2") == AdapterRef("sales", "v2")
    # files equal to an older, no longer current version are a new upload: a new version
    assert reg.add("sales", Path("/a"), content="h1") == AdapterRef("sales", "v3")
    assert Registry(new_store()).entry(AdapterRef("sales", "v3")).content == "h1"
