"""Settings come from flags, SWITCHBOARD_* variables and a YAML file, in that order of priority."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from switchboard.cli import build_parser
from switchboard.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def test_defaults():
    s = load_settings(None)
    assert (s.host, s.port, s.model, s.engine) == ("127.0.0.1", 8000, "gemma3-270m", "hf")


def test_yaml_env_and_flag_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "switchboard.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "port": 9001,
                "max_batch_size": 12,
                "default_adapter": "shop",
                "routes": [{"adapter": "after-sales", "header": "X-Scenario", "value": "after-sales"}],
            }
        )
    )
    monkeypatch.setenv("SWITCHBOARD_MAX_BATCH_SIZE", "20")
    monkeypatch.setenv("SWITCHBOARD_ADMIN_KEY", "sk-admin")
    s = load_settings(config, port=9100)
    assert s.port == 9100  # flag beats file
    assert s.max_batch_size == 20  # env beats file
    assert s.default_adapter == "shop"  # file beats default
    assert s.routes[0].adapter == "after-sales"
    assert s.admin_key is not None and s.admin_key.get_secret_value() == "sk-admin"


def test_unknown_key_in_yaml_is_an_error(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("prot: 9000\n")
    with pytest.raises(ValueError, match="prot"):
        load_settings(config)


def test_missing_config_file():
    with pytest.raises(FileNotFoundError):
        load_settings("/no/such/file.yaml")


def test_cli_flags_parse():
    args = build_parser().parse_args(
        [
            "serve",
            "--adapter",
            "a=/x",
            "--adapter",
            "b=/y",
            "--api-key",
            "k1",
            "--adapter-root",
            "/r1",
            "--port",
            "8123",
        ]
    )
    assert args.adapters == [("a", "/x"), ("b", "/y")] and args.port == 8123 and args.api_keys == ["k1"]


def test_every_setting_has_a_flag_that_sets_it():
    """The serve flags are generated from Settings: each field is one flag, and a flag reaches the field."""
    from switchboard.cli import settings_overrides

    args = build_parser().parse_args(
        ["serve", "--served-model-name", "shop-bot", "--max-queue", "7", "--no-watch-adapter-dir"]
        + ["--route", "{adapter: a, header: X-S}", "--watch-interval-s", "0.5", "--engine-arg", "enforce-eager=true"]
    )
    settings = load_settings(None, **settings_overrides(args))
    assert settings.served_model_name == "shop-bot" and settings.max_queue == 7
    assert settings.watch_adapter_dir is False and settings.watch_interval_s == 0.5
    assert settings.routes[0].adapter == "a" and settings.routes[0].header == "X-S"
    assert settings.engine_args == {"enforce_eager": True}
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    dests = {a.dest for a in serve._actions if a.option_strings}
    assert set(Settings.model_fields) <= dests


def test_every_setting_is_described_and_documented():
    import runpy

    docs = (REPO / "docs" / "configuration.md").read_text()
    render = runpy.run_path(str(REPO / "docs" / "gen_configuration.py"))["render"]
    assert docs == render(), "docs/configuration.md is stale: run python docs/gen_configuration.py"
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"
        assert f"`{name}`" in docs, f"setting {name} is missing from docs/configuration.md"


def test_bundled_yaml_configs_load():
    for path in sorted((REPO / "deploy").glob("switchboard*.yaml")):
        load_settings(path)
    bundled = load_settings(REPO / "adapters" / "switchboard.yaml")
    assert bundled.default_adapter == "shop"
    assert bundled.console  # make serve opens the console at /console/
    assert {r.adapter for r in bundled.routes} == {"pre-sales", "after-sales", "marketing"}
