"""The `switchboard` command: serve, adapters, experiments, keys, train, eval, model path.

`serve` has one flag per Settings field, generated from the field (help = its description)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from . import admin_client, experiments_client, keys_client
from .config import Settings, load_settings
from .logs import configure_logging
from .registry import transfer


def _field_help(name: str) -> str:
    return Settings.model_fields[name].description or ""


def _parse_adapter(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, path


def _parse_engine_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.replace("-", "_"), yaml.safe_load(value)


def _parse_sampling(text: str) -> tuple[str, object]:
    """`repetition_penalty=1.1` (or `repetition-penalty=1.1`): one SamplingParams field and its value."""
    from dataclasses import fields

    from .engine.base import SamplingParams

    key, value = _parse_engine_arg(text)
    known = {f.name for f in fields(SamplingParams)} - {"max_tokens", "temperature"}
    if key not in known:
        raise argparse.ArgumentTypeError(f"unknown sampling field {key!r}; one of {', '.join(sorted(known))}")
    return key, value


def _parse_named_yaml(text: str) -> tuple[str, object]:
    """`after-sales={repetition_penalty: 1.1}`: a name (kept as written) and a YAML value."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=YAML, got {text!r}")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"expected NAME=YAML, got {text!r}: {exc}") from exc


def _parse_route(text: str) -> dict[str, Any]:
    try:
        rule = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"expected a YAML mapping, got {text!r}: {exc}") from exc
    if not isinstance(rule, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping like '{{adapter: x, header: X-S}}', got {text!r}")
    return rule


# Settings whose flag is repeated once per item: the flag's name (singular) and how one item is read.
_REPEATED: dict[str, tuple[str, Callable[[str], Any], str | None]] = {
    "adapters": ("--adapter", _parse_adapter, "NAME=DIR"),
    "adapter_roots": ("--adapter-root", Path, "DIR"),
    "api_keys": ("--api-key", str, "KEY"),
    "cors_origins": ("--cors-origin", str, "ORIGIN"),
    "engine_args": ("--engine-arg", _parse_engine_arg, "KEY=VALUE"),
    "routes": ("--route", _parse_route, "YAML"),
    "ray": ("--ray", _parse_engine_arg, "KEY=VALUE"),
    "adapter_sampling": ("--adapter-sampling", _parse_named_yaml, "NAME=YAML"),
}


def _scalar_type(annotation: Any) -> Callable[[str], Any]:
    """The argparse `type` of a scalar setting: int, float, Path or str (Optional unwrapped)."""
    candidates = [a for a in (get_args(annotation) or (annotation,)) if a is not type(None)]
    for kind in (bool, int, float, Path):
        if kind in candidates:
            return kind
    return str


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field, its help the field's description, its default None (= not given)."""
    for name, field in Settings.model_fields.items():
        help_text = field.description or ""
        if name in _REPEATED:
            flag, item, metavar = _REPEATED[name]
            parser.add_argument(flag, dest=name, action="append", type=item, metavar=metavar, help=help_text)
            continue
        flag = "--" + name.replace("_", "-")
        annotation = field.annotation
        if get_origin(annotation) is Literal:
            parser.add_argument(flag, dest=name, choices=list(get_args(annotation)), help=help_text)
        elif _scalar_type(annotation) is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=_scalar_type(annotation), help=help_text)


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The Settings fields given as flags (repeated NAME=VALUE flags become mappings)."""
    overrides: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = dict(value) if name in ("adapters", "engine_args", "ray", "adapter_sampling") else value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description="Serve many LoRA adapters from one base model.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the OpenAI-compatible server")
    serve.add_argument("--config", type=Path, help="YAML config file (any setting below)")
    add_settings_flags(serve)

    serve_ray = sub.add_parser(
        "serve-ray",
        help="run the same server as a Ray Serve application: engine replicas with adapter affinity (docs/scaling.md)",
    )
    serve_ray.add_argument("--config", type=Path, help="YAML config file (any setting below; `ray:` lays out Serve)")
    add_settings_flags(serve_ray)

    admin_client.add_parser(sub)
    experiments_client.add_parser(sub)
    keys_client.add_parser(sub)
    transfer.add_parser(sub)

    train = sub.add_parser("train", help="train a LoRA adapter from a YAML config (see docs/training.md)")
    train.add_argument("config", type=Path, help="YAML config (adapters/configs/example.yaml shows every key)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    train.add_argument(
        "--register",
        metavar="URL",
        help="register the result on a running server (admin key from SWITCHBOARD_ADMIN_KEY)",
    )
    train.add_argument("--name", help="adapter name for --register (default: the output dir's name)")

    ev = sub.add_parser("eval", help="compare the base model and the scenario adapters on held-out dialogues")
    ev.add_argument("--model", default=Settings.model_fields["model"].default, help=_field_help("model"))
    ev.add_argument("--adapters-dir", type=Path, default=Path("adapters"), help="dir holding one adapter per scenario")
    ev.add_argument("--datasets", type=Path, default=Path("adapters/datasets"), help="scenario datasets + rubric.py")
    ev.add_argument(
        "--adapter",
        action="append",
        dest="eval_adapters",
        metavar="NAME",
        help="adapters to compare (default: pre-sales, after-sales, marketing, shop)",
    )
    ev.add_argument("--limit", type=int, help="held-out dialogues per scenario (default: all)")
    ev.add_argument("--max-new-tokens", type=int, default=96)
    ev.add_argument("--out", type=Path, default=Path("docs/scenarios.md"), help="markdown report to write")
    ev.add_argument(
        "--sampling",
        action="append",
        type=_parse_sampling,
        default=[],
        metavar="KEY=VALUE",
        help="a SamplingParams field for every answer, over the adapters' defaults, e.g. repetition_penalty=1.1 "
        "(greedy always)",
    )
    ev.add_argument("--weights", choices=["auto", "fp16", "dtype"], default="auto", help=_field_help("weights"))
    ev.add_argument("--lm-head", choices=["auto", "shortlist", "full"], default="auto", help=_field_help("lm_head"))
    ev.add_argument("--answers", type=Path, help="also write every answer, its checks and why degenerate (JSONL)")
    ev.add_argument(
        "--skip-loss",
        action="store_true",
        help="skip the reference losses (they do not depend on sampling): answers, rubric and degenerate only",
    )
    ev.add_argument(
        "--config",
        type=Path,
        default=Path("adapters/switchboard.yaml"),
        help="server config whose adapter_sampling defaults the adapters' answers use, as served ('' = none)",
    )

    model = sub.add_parser("model", help="base model utilities")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    path = model_sub.add_parser("path", help="print the local Hugging Face dir of the base model")
    path.add_argument("--model", help=_field_help("model"))
    path.add_argument("--cache-dir", type=Path, help=_field_help("cache_dir"))
    return parser


def _serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .drain import serve

    overrides = settings_overrides(args)
    settings = load_settings(args.config, **overrides)
    configure_logging(settings.log_level, settings.log_format)
    serve(create_app(settings), settings)
    return 0


def _serve_ray(args: argparse.Namespace) -> int:
    try:
        from .ray_serve import run
    except ImportError as exc:
        print(f"switchboard serve-ray: Ray Serve is missing ({exc}): pip install 'switchboard[ray]'", file=sys.stderr)
        return 2
    settings = load_settings(args.config, **settings_overrides(args))
    configure_logging(settings.log_level, settings.log_format)
    return run(settings)


def _model_path(args: argparse.Namespace) -> int:
    from .models import resolve_model_dir

    settings = load_settings(None, model=args.model, cache_dir=args.cache_dir)
    print(resolve_model_dir(settings.model, settings.cache_dir))
    return 0


def _train(args: argparse.Namespace) -> int:
    try:
        from switchboard_trainer.config import ConfigError, load_config
        from switchboard_trainer.data import DataError
        from switchboard_trainer.train import TrainError, register, train
    except ImportError as exc:  # pragma: no cover - the trainer ships with the package
        print(f"switchboard: the trainer is not installed: {exc}", file=sys.stderr)
        return 2
    from .errors import SwitchboardError

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, args.set)
        out = train(config)
        if args.register:
            ref = register(args.register, args.name or out.name, out)
            print(f"registered {ref} on {args.register}")
    except (ConfigError, DataError, TrainError) as exc:
        print(f"switchboard train: error: {exc}", file=sys.stderr)
        return 2
    except SwitchboardError as exc:
        print(f"switchboard train: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "switchboard train: interrupted; run the same command again to resume from the last checkpoint",
            file=sys.stderr,
        )
        return 130
    return 0


NOTES_MARKER = "<!-- notes below: kept when `switchboard eval` rewrites this file -->"


def keep_notes(report: str, old: str) -> str:
    """The new report, then the hand-written notes (a sampling sweep, …) from NOTES_MARKER on in the old one."""
    return report + "\n" + old[old.index(NOTES_MARKER) :] if NOTES_MARKER in old else report


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, report
    from .models import default_cache_dir

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = args.eval_adapters or ["pre-sales", "after-sales", "marketing", "shop"]
    cache = default_cache_dir()
    config = args.config if args.config and str(args.config) and args.config.is_file() else None
    defaults = {
        name: sampling.model_dump(exclude_none=True)
        for name, sampling in load_settings(config).adapter_sampling.items()
    }
    cells, info = evaluate(
        args.model,
        args.adapters_dir,
        args.datasets,
        names,
        args.limit,
        args.max_new_tokens,
        cache,
        sampling=dict(args.sampling),
        adapter_sampling=defaults,
        losses=not args.skip_loss,
        weights=args.weights,
        lm_head=args.lm_head,
    )
    text = report(cells, info)
    if args.answers:
        args.answers.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in info["answers"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(keep_notes(text, args.out.read_text() if args.out.is_file() else ""))
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "serve-ray":
            return _serve_ray(args)
        if args.command == "model":
            return _model_path(args)
        if args.command == "adapters":
            return admin_client.run(args)
        if args.command == "experiments":
            return experiments_client.run(args)
        if args.command == "keys":
            return keys_client.run(args)
        if args.command == "registry":
            return transfer.run(args)
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
