"""Imports point one way (api -> services -> routing -> registry; engine below all of them), and the
trainer uses nothing of the server but what it shares on purpose. Read from the source, not imported."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "server" / "switchboard"
TRAINER = REPO / "trainer" / "switchboard_trainer"

# what the trainer may use of the server: adapter validation, the base models, the CPU facts and the
# admin client (for --register); never the engine, the API or the registry
TRAINER_MAY_IMPORT = {"switchboard", "switchboard.validation", "switchboard.models", "switchboard.hardware"}
TRAINER_MAY_IMPORT |= {"switchboard.admin_client", "switchboard.errors"}


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved against `package`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
    return names


def package_of(path: Path, root: Path, top: str) -> str:
    """The package a module file belongs to: server/switchboard/api/openai.py -> switchboard.api."""
    return ".".join([top, *path.relative_to(root).parent.parts])


def server_imports(subdir: str) -> dict[str, set[str]]:
    root = SERVER / subdir
    return {
        str(path.relative_to(REPO)): imported_modules(path, package_of(path, SERVER, "switchboard"))
        for path in sorted(root.rglob("*.py"))
    }


def test_the_trainer_uses_only_the_shared_parts_of_the_server():
    for path in sorted(TRAINER.rglob("*.py")):
        package = package_of(path, TRAINER, "switchboard_trainer")
        used = {m for m in imported_modules(path, package) if m.split(".")[0] == "switchboard"}
        assert used <= TRAINER_MAY_IMPORT, f"{path.relative_to(REPO)} imports {sorted(used - TRAINER_MAY_IMPORT)}"


def test_the_engine_knows_nothing_of_http_routing_or_the_registry_store():
    for path, modules in server_imports("engine").items():
        bad = {
            m
            for m in modules
            if m.split(".")[0] in ("fastapi", "starlette")
            or m.startswith(("switchboard.api", "switchboard.routing", "switchboard.services"))
            or m.startswith(("switchboard.registry.registry", "switchboard.registry.store"))
        }
        assert not bad, f"{path} imports {sorted(bad)}"


def test_registry_and_experiments_sit_below_the_api_and_the_engine():
    for subdir in ("registry", "experiments"):
        for path, modules in server_imports(subdir).items():
            bad = {m for m in modules if m.startswith(("switchboard.api", "switchboard.engine", "fastapi"))}
            assert not bad, f"{path} imports {sorted(bad)}"


def test_every_module_stays_under_about_400_lines():
    long = {
        str(path.relative_to(REPO)): n
        for root in ("server", "trainer", "loadtests", "tests", "adapters")
        for path in (REPO / root).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 420
    }
    assert not long, f"split these modules by concern: {long}"
