"""The `switchboard` command: serve, model path."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import admin_client
from .config import Settings, load_settings


def _field_help(name: str) -> str:
    return Settings.model_fields[name].description or ""


def _parse_adapter(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, path


def _parse_engine_arg(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.replace("-", "_"), yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description="Serve many LoRA adapters from one base model.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the OpenAI-compatible server")
    serve.add_argument("--config", type=Path, help="YAML config file (any setting below)")
    serve.add_argument("--host", help=_field_help("host"))
    serve.add_argument("--port", type=int, help=_field_help("port"))
    serve.add_argument("--model", help=_field_help("model"))
    serve.add_argument("--engine", choices=["hf", "vllm"], help=_field_help("engine"))
    serve.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], help=_field_help("dtype"))
    serve.add_argument("--quantize", choices=["none", "int8"], help=_field_help("quantize"))
    serve.add_argument(
        "--adapter", action="append", type=_parse_adapter, metavar="NAME=DIR", help=_field_help("adapters")
    )
    serve.add_argument("--adapter-dir", type=Path, help=_field_help("adapter_dir"))
    serve.add_argument("--adapter-root", action="append", type=Path, help=_field_help("adapter_roots"))
    serve.add_argument("--state-dir", type=Path, help=_field_help("state_dir"))
    serve.add_argument("--cache-dir", type=Path, help=_field_help("cache_dir"))
    serve.add_argument("--admin-key", help=_field_help("admin_key"))
    serve.add_argument("--api-key", action="append", help=_field_help("api_keys"))
    serve.add_argument("--default-adapter", help=_field_help("default_adapter"))
    serve.add_argument("--max-resident-adapters", type=int, help=_field_help("max_resident_adapters"))
    serve.add_argument("--max-lora-rank", type=int, help=_field_help("max_lora_rank"))
    serve.add_argument("--max-loras", type=int, help=_field_help("max_loras"))
    serve.add_argument(
        "--engine-arg", action="append", type=_parse_engine_arg, metavar="KEY=VALUE", help=_field_help("engine_args")
    )
    serve.add_argument("--watch-adapter-dir", action="store_true", default=None, help=_field_help("watch_adapter_dir"))
    serve.add_argument("--max-batch-size", type=int, help=_field_help("max_batch_size"))
    serve.add_argument("--max-model-len", type=int, help=_field_help("max_model_len"))
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help=_field_help("log_level"))

    admin_client.add_parser(sub)
    admin_client.add_experiments_parser(sub)

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
    ev.add_argument("--model", default="gemma3-270m", help=_field_help("model"))
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

    model = sub.add_parser("model", help="base model utilities")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    path = model_sub.add_parser("path", help="print the local Hugging Face dir of the base model")
    path.add_argument("--model", help=_field_help("model"))
    path.add_argument("--cache-dir", type=Path, help=_field_help("cache_dir"))
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    overrides = {
        "host": args.host,
        "port": args.port,
        "model": args.model,
        "engine": args.engine,
        "dtype": args.dtype,
        "quantize": args.quantize,
        "adapters": dict(args.adapter) if args.adapter else None,
        "adapter_dir": args.adapter_dir,
        "adapter_roots": args.adapter_root,
        "state_dir": args.state_dir,
        "cache_dir": args.cache_dir,
        "admin_key": args.admin_key,
        "api_keys": args.api_key,
        "default_adapter": args.default_adapter,
        "max_batch_size": args.max_batch_size,
        "max_resident_adapters": args.max_resident_adapters,
        "max_lora_rank": args.max_lora_rank,
        "max_loras": args.max_loras,
        "engine_args": dict(args.engine_arg) if args.engine_arg else None,
        "watch_adapter_dir": args.watch_adapter_dir,
        "max_model_len": args.max_model_len,
        "log_level": args.log_level,
    }
    settings = load_settings(args.config, **overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, timeout_graceful_shutdown=5)
    return 0


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


def _eval(args: argparse.Namespace) -> int:
    import os

    from switchboard_trainer.evaluate import evaluate, report

    names = args.eval_adapters or ["pre-sales", "after-sales", "marketing", "shop"]
    cache = Path(os.environ.get("SWITCHBOARD_CACHE_DIR", Path.home() / ".cache" / "switchboard"))
    cells, info = evaluate(args.model, args.adapters_dir, args.datasets, names, args.limit, args.max_new_tokens, cache)
    text = report(cells, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "model":
            return _model_path(args)
        if args.command == "adapters":
            return admin_client.run(args)
        if args.command == "experiments":
            return admin_client.run_experiments(args)
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
