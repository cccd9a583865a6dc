"""The registry in PostgreSQL, shared by every replica (`--registry postgresql://…`).

Same shape as the JSON store behind `Registry._commit` (copy, apply, persist, swap), plus one thing a
file cannot give: `transaction()` takes a cluster-wide advisory lock and yields the state as committed
by any replica, so a change is applied to the latest state and two replicas registering the same
name at once get v1 and v2, never two v1. A change is acknowledged only after its transaction has
committed; every commit bumps a generation and NOTIFYs `switchboard_registry` with it.

Tables are normalized (adapters, versions, aliases, alias history, experiments, API keys); a save rewrites
them inside the locked transaction (registries hold hundreds of rows, not millions). The schema is
created and migrated by Switchboard on start: numbered migrations, applied under an advisory lock,
so replicas starting at once on an empty database make one schema.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import RegistryUnavailable
from .store import StoreHealth

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)

CHANNEL = "switchboard_registry"
_CHANGE_LOCK = 0x5357_4252_4547  # advisory lock keys ("SWBREG", "SWBMIG")
_MIGRATION_LOCK = 0x5357_424D_4947

MIGRATIONS: tuple[str, ...] = (
    # 1: adapters, versions (seq keeps registration order), aliases with history, experiments, generation
    """
    CREATE TABLE sb_adapters (
        name text PRIMARY KEY,
        current text,
        counter integer NOT NULL DEFAULT 0
    );
    CREATE TABLE sb_versions (
        seq bigserial,
        name text NOT NULL REFERENCES sb_adapters (name) ON DELETE CASCADE,
        version text NOT NULL,
        path text NOT NULL,
        pinned boolean NOT NULL DEFAULT false,
        created double precision NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE sb_aliases (alias text PRIMARY KEY, target text NOT NULL);
    CREATE TABLE sb_alias_history (alias text NOT NULL, seq integer NOT NULL, target text NOT NULL,
                                   PRIMARY KEY (alias, seq));
    CREATE TABLE sb_experiments (name text PRIMARY KEY, definition jsonb NOT NULL);
    CREATE TABLE sb_generation (id boolean PRIMARY KEY DEFAULT true CHECK (id), generation bigint NOT NULL);
    INSERT INTO sb_generation (generation) VALUES (0);
    """,
    # 2: when the last change committed (database clock), for the replicas' sync lag
    """
    ALTER TABLE sb_generation ADD COLUMN committed_at timestamptz NOT NULL DEFAULT now();
    """,
    # 3: experiment outcomes summed over every replica, and completion ids that take feedback anywhere
    """
    CREATE TABLE sb_variant_stats (
        experiment text NOT NULL,
        variant text NOT NULL,
        requests bigint NOT NULL DEFAULT 0,
        errors bigint NOT NULL DEFAULT 0,
        prompt_tokens bigint NOT NULL DEFAULT 0,
        completion_tokens bigint NOT NULL DEFAULT 0,
        feedback_count bigint NOT NULL DEFAULT 0,
        feedback_sum double precision NOT NULL DEFAULT 0,
        feedback_sumsq double precision NOT NULL DEFAULT 0,
        PRIMARY KEY (experiment, variant)
    );
    CREATE TABLE sb_variant_buckets (
        experiment text NOT NULL,
        variant text NOT NULL,
        kind text NOT NULL,
        bucket integer NOT NULL,
        count bigint NOT NULL,
        PRIMARY KEY (experiment, variant, kind, bucket)
    );
    CREATE TABLE sb_completions (
        id text PRIMARY KEY,
        adapter text NOT NULL,
        version text NOT NULL,
        experiment text NOT NULL,
        variant text NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX sb_completions_expiry ON sb_completions (expires_at);
    """,
    # 4: each version's content hash (a retried registration returns the version it made)
    """
    ALTER TABLE sb_versions ADD COLUMN content text;
    """,
    # 5: requests of a sticky experiment that came without their key (assigned at random, counted apart)
    """
    ALTER TABLE sb_variant_stats ADD COLUMN fallback bigint NOT NULL DEFAULT 0;
    """,
    # 6: API keys (tenants): the key's SHA-256 and its record (allowed patterns, limits), never the key
    """
    CREATE TABLE sb_keys (name text PRIMARY KEY, digest text NOT NULL UNIQUE, record jsonb NOT NULL);
    """,
)


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by the connection itself
        return "postgresql://…"
    user, host, port, db = (parts.get(k, "") for k in ("user", "host", "port", "dbname"))
    return f"postgresql://{user}@{host}:{port or 5432}/{db}"


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema to the latest migration (idempotent; serialized across replicas); its number."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS sb_schema (version integer PRIMARY KEY)")
        row = conn.execute("SELECT coalesce(max(version), 0) FROM sb_schema").fetchone()
        current = int(row[0]) if row else 0
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"the registry database has schema {current}, newer than this Switchboard knows "
                f"({len(MIGRATIONS)}); upgrade Switchboard"
            )
        for number, sql in enumerate(MIGRATIONS, start=1):
            if number > current:
                conn.execute(sql)
                conn.execute("INSERT INTO sb_schema (version) VALUES (%s)", (number,))
                logger.info("registry schema migrated to %d", number)
    return len(MIGRATIONS)


class PostgresStore:
    """Registry persistence in PostgreSQL (psycopg 3 with a small connection pool)."""

    def __init__(self, url: str, *, max_connections: int = 4, timeout_s: float = 5.0) -> None:
        from psycopg_pool import ConnectionPool

        self.url = url
        self.pool: ConnectionPool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            timeout=timeout_s,
            open=False,
            name="switchboard-registry",
            check=ConnectionPool.check_connection,  # never hand out a connection a restart has broken
            kwargs={"connect_timeout": max(1, int(timeout_s))},
        )
        try:
            self.pool.open(wait=True, timeout=timeout_s)
        except Exception as exc:  # PoolTimeout: nothing answered within timeout_s
            self.pool.close()
            raise RuntimeError(f"cannot reach the registry at {redact(url)} within {timeout_s:g}s: {exc}") from exc
        self.up = True  # False while PostgreSQL cannot be reached (metrics, /ready)
        self._pool_ok = True
        self._timeout = max(1, int(timeout_s))
        self.reconnects = 0
        self.sync_lag_s = 0.0  # commit (any replica) -> seen by this replica's watch, database clock
        self._local = threading.local()
        with self.pool.connection() as conn:
            migrate(conn)
        logger.info("registry in %s", redact(url))

    def close(self) -> None:
        self.pool.close()

    def health(self) -> StoreHealth:
        return StoreHealth(self.up, self.sync_lag_s, self.reconnects)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; PostgreSQL out of reach becomes RegistryUnavailable (503, Retry-After).
        After an outage the next calls connect directly (the pool may still be backing off between
        its reconnection attempts), so changes work again as soon as PostgreSQL is back."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            if self._pool_ok:
                with self.pool.connection() as conn:
                    yield conn
            else:
                with psycopg.connect(self.url, connect_timeout=self._timeout) as conn:
                    yield conn
                self.pool.check()  # drop the pool's broken connections; it refills from here
                self._pool_ok = True
            self.up = True
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            self.up = self._pool_ok = False
            raise RegistryUnavailable(
                f"registry unavailable: PostgreSQL at {redact(self.url)} cannot be reached ({exc}); "
                "serving goes on with the versions already loaded; retry the change shortly"
            ) from exc

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """A transaction holding the registry's change lock; yields the latest committed state.
        `save` inside it writes in this transaction; it commits when the block ends without error."""
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CHANGE_LOCK,))
            self._local.conn = conn
            try:
                yield self._read(conn)
            finally:
                self._local.conn = None

    def load(self) -> dict[str, Any]:
        with self.connection() as conn, conn.transaction():
            return self._read(conn)

    def watch(self, on_change: Callable[[int], bool | None], stop: threading.Event, reconcile_s: float = 30.0) -> None:
        """Call `on_change(generation)` when any replica commits a change (LISTEN/NOTIFY), and every
        `reconcile_s` and after a reconnect when the generation moved (the safety net for a lost
        notification). An `on_change` that returns False failed and is called again a second later.
        Blocks until `stop` is set: run it in a thread."""
        import psycopg

        seen = -1
        backoff = 0.5
        while not stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if backoff > 0.5 or not self.up:
                        self.reconnects += 1
                        logger.info("registry watch reconnected to %s", redact(self.url))
                    self.up, backoff = True, 0.5
                    while not stop.is_set():
                        row = conn.execute(
                            "SELECT generation, extract(epoch FROM now() - committed_at) FROM sb_generation"
                        ).fetchone()
                        generation = int(row[0]) if row else 0
                        wait_s = reconcile_s
                        if generation != seen:
                            self.sync_lag_s = float(row[1]) if row and seen >= 0 else 0.0
                            if on_change(generation) is False:
                                wait_s = 1.0  # the sync failed (e.g. the pool still reconnecting): retry soon
                            else:
                                seen = generation
                        # wake on the first notification or after a short wait, to check `stop` often
                        deadline = time.monotonic() + wait_s
                        while not stop.is_set() and time.monotonic() < deadline:
                            if any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                                break
            except psycopg.Error as exc:
                # the pool's connections went with it, and the pool may back off for seconds before it
                # reconnects: the next calls connect directly, so a sync works as soon as PostgreSQL is back
                self.up = self._pool_ok = False
                logger.warning("registry watch lost %s (%s); retrying in %.1fs", redact(self.url), exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def save(self, state: dict[str, Any]) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self.transaction():
                self.save(state)
            return
        self._write(conn, state)

    # ------------------------------------------------------------------ rows <-> state
    @staticmethod
    def _read(conn: psycopg.Connection[Any]) -> dict[str, Any]:
        adapters: dict[str, dict[str, Any]] = {}
        for name, current, counter in conn.execute("SELECT name, current, counter FROM sb_adapters ORDER BY name"):
            adapters[name] = {"current": current, "counter": counter, "versions": {}}
        versions = conn.execute("SELECT name, version, path, pinned, created, content FROM sb_versions ORDER BY seq")
        for name, version, path, pinned, created, content in versions:
            adapters[name]["versions"][version] = {
                "path": path,
                "pinned": pinned,
                "created": created,
                "content": content,
            }
        aliases = dict(conn.execute("SELECT alias, target FROM sb_aliases").fetchall())
        history: dict[str, list[str]] = {}
        for alias, target in conn.execute("SELECT alias, target FROM sb_alias_history ORDER BY alias, seq"):
            history.setdefault(alias, []).append(target)
        experiments = dict(conn.execute("SELECT name, definition FROM sb_experiments").fetchall())
        keys = dict(conn.execute("SELECT name, record FROM sb_keys").fetchall())
        return {
            "adapters": adapters,
            "aliases": aliases,
            "alias_history": history,
            "experiments": experiments,
            "keys": keys,
        }

    @staticmethod
    def _write(conn: psycopg.Connection[Any], state: dict[str, Any]) -> None:
        for table in ("sb_versions", "sb_adapters", "sb_aliases", "sb_alias_history", "sb_experiments", "sb_keys"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        adapters = state.get("adapters", {})
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sb_adapters (name, current, counter) VALUES (%s, %s, %s)",
                [(name, a["current"], a["counter"]) for name, a in adapters.items()],
            )
            cur.executemany(
                "INSERT INTO sb_versions (name, version, path, pinned, created, content) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (name, version, v["path"], v["pinned"], v["created"], v.get("content"))
                    for name, a in adapters.items()
                    for version, v in a["versions"].items()
                ],
            )
            cur.executemany(
                "INSERT INTO sb_aliases (alias, target) VALUES (%s, %s)", list(state.get("aliases", {}).items())
            )
            cur.executemany(
                "INSERT INTO sb_alias_history (alias, seq, target) VALUES (%s, %s, %s)",
                [(a, i, t) for a, targets in state.get("alias_history", {}).items() for i, t in enumerate(targets)],
            )
            cur.executemany(
                "INSERT INTO sb_experiments (name, definition) VALUES (%s, %s::jsonb)",
                [(name, json.dumps(d)) for name, d in state.get("experiments", {}).items()],
            )
            cur.executemany(
                "INSERT INTO sb_keys (name, digest, record) VALUES (%s, %s, %s::jsonb)",
                [(name, r["digest"], json.dumps(r)) for name, r in state.get("keys", {}).items()],
            )
        row = conn.execute(
            "UPDATE sb_generation SET generation = generation + 1, committed_at = clock_timestamp() "
            "RETURNING generation"
        ).fetchone()
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(row[0] if row else 0)))
