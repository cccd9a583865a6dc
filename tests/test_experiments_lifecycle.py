"""An experiment's life in the registry: running, then stopped or concluded; concluding moves the alias it
tests to the winner in the same commit as the state (both stores); and the CLI's parsing and listing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from switchboard.errors import Conflict, InvalidRequest
from switchboard.experiments import CONCLUDED, RUNNING, STOPPED, define
from switchboard.experiments_client import parse_variants, render_list
from switchboard.registry import Registry
from switchboard.registry.store import MemoryStore, Store


def test_conclude_moves_the_alias_and_ends_the_experiment_in_one_commit(new_store: Callable[[], Store]):
    reg = Registry(new_store())
    reg.add("sales", Path("/a"))
    reg.add("sales", Path("/b"))
    reg.set_alias("prod", "sales@v1")
    reg.set_experiment("exp", define(reg, "exp", {"sales@v1": 1, "sales@v2": 1}, alias="prod"))
    assert reg.experiment("exp").state == RUNNING
    done, previous = reg.update_experiment("exp", lambda e: e.end(CONCLUDED, "sales@v2"), "prod")
    assert previous == "sales@v1" and done.winner == "sales@v2" and done.ended is not None
    other = Registry(new_store())  # what another replica (or a restart) reads
    assert other.aliases()["prod"] == "sales@v2" and other.experiment("exp").state == CONCLUDED
    assert other.experiment("exp").serving == "sales@v2"
    with pytest.raises(Conflict):
        reg.update_experiment("exp", lambda e: e.end(STOPPED))


def test_a_failed_conclusion_changes_neither_the_alias_nor_the_experiment():
    reg = Registry(MemoryStore())
    reg.add("sales", Path("/a"))
    reg.set_alias("prod", "sales@v1")
    reg.set_experiment("exp", define(reg, "exp", {"sales@v1": 1}))
    with pytest.raises(InvalidRequest, match="not a variant"):
        reg.update_experiment("exp", lambda e: e.end(CONCLUDED, "sales@v9"), "prod")
    assert reg.aliases()["prod"] == "sales@v1" and reg.experiment("exp").state == RUNNING


def test_an_experiment_names_an_existing_alias_or_none():
    reg = Registry(MemoryStore())
    reg.add("sales", Path("/a"))
    with pytest.raises(Exception, match="alias 'prod' not found"):
        define(reg, "exp", {"sales": 1}, alias="prod")


def test_cli_variants_keep_their_order_and_default_to_weight_1():
    assert list(parse_variants(["sales@v10=90", "sales@v2"]).items()) == [("sales@v10", 90.0), ("sales@v2", 1.0)]
    listing = {
        "experiments": [
            {
                "experiment": "exp",
                "state": "running",
                "control": "sales@v10",
                "variants": [{"variant": "sales@v10", "weight": 90.0}, {"variant": "sales@v2", "weight": 10.0}],
                "sticky": "user",
                "alias": None,
                "winner": None,
            }
        ]
    }
    assert "sales@v10=90, sales@v2=10" in render_list(listing)
    assert render_list({"experiments": []}) == "no experiments"
