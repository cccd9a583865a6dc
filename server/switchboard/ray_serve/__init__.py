"""`switchboard serve-ray`: the same server as a Ray Serve application (optional extra `switchboard[ray]`).

An `Ingress` deployment serves the whole API and resolves each request's adapter version as one process
does; `EngineReplica` deployments run the engine, and Serve's model multiplexing keeps each version's
requests on the replicas that hold it (docs/scaling.md). Ray is imported only here.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from ..config import Settings

logger = logging.getLogger(__name__)


def engine_replica_options(settings: Settings) -> dict[str, Any]:
    """Serve options of the engine replicas, from the `ray:` section."""
    layout = settings.ray
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": layout.num_cpus, "num_gpus": layout.num_gpus},
        # beyond this many requests on one replica, Serve keeps them (and may pick another replica)
        "max_ongoing_requests": layout.max_ongoing_requests or settings.max_batch_size,
    }
    if layout.autoscaling:
        options["autoscaling_config"] = layout.autoscaling
    else:
        options["num_replicas"] = layout.replicas
    return options


def build_application(settings: Settings) -> Any:
    """The Serve application (not yet running) that `settings` describe."""
    from ray import serve

    from .deployments import Ingress, engine_replica

    data = settings.model_dump()
    replicas = engine_replica(settings.max_resident_adapters).options(**engine_replica_options(settings)).bind(data)
    ingress: Any = serve.deployment(Ingress)  # serve.ingress() hides the class from the type checker
    return ingress.options(
        name="Ingress",
        num_replicas=settings.ray.ingress_replicas,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=settings.max_queue,
    ).bind(data, replicas)


def check_layout(settings: Settings) -> None:
    """Refuse a layout that cannot be consistent: several ingress replicas each with its own JSON registry."""
    shared = (settings.registry or "").startswith(("postgresql://", "postgres://"))
    if settings.ray.ingress_replicas > 1 and not shared:
        raise ValueError(
            "ray.ingress_replicas > 1 needs a registry shared by the replicas: --registry postgresql://… "
            "(docs/scaling.md)"
        )


def run(settings: Settings) -> int:
    """Start (or join) Ray, run the application on settings.host:port, and serve until SIGINT/SIGTERM."""
    import ray
    from ray import serve

    check_layout(settings)
    address = settings.ray.address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, logging_level=logging.WARNING)
    where = f"the Ray cluster at {address}" if address else "a local Ray"
    app_name = settings.ray.app_name
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_application(settings), name=app_name, route_prefix="/", blocking=False)
    except BaseException:  # a deployment that failed (or Ctrl-C while deploying): leave no Ray behind
        _stop(app_name, local=address is None)
        raise
    host, port = _proxy_address(settings.host, settings.port)
    if (host, port) != (settings.host, settings.port):
        logger.warning(
            "Serve was already running on this cluster with its HTTP proxy on %s:%d: --host/--port are ignored "
            "(Serve's proxy is one per cluster)",
            host,
            port,
        )
    logger.info("serving %s on http://%s:%d through %s", app_name, host, port, where)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    logger.info("stopping %s", app_name)
    # a signal from a terminal or `timeout` reaches the local Ray's own processes too: never wait on them
    # for long. A local Ray goes down with us; on a cluster we joined, only our application is deleted.
    cleanup = threading.Thread(target=_stop, args=(app_name, address is None), daemon=True)
    cleanup.start()
    cleanup.join(timeout=60)
    if cleanup.is_alive():
        logger.warning("Ray did not stop within 60 s; exiting anyway")
    return 0


def _proxy_address(host: str, port: int) -> tuple[str, int]:
    """Where Serve's HTTP proxy really listens (the first `serve.start` on a cluster sets it)."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        if client is None:
            return host, port
        return str(client.http_config.host), int(client.http_config.port)
    except Exception:  # noqa: BLE001 - a private API: fall back to what was asked
        return host, port


def _stop(app_name: str, local: bool) -> None:
    import ray
    from ray import serve

    try:
        if not local:
            serve.delete(app_name)
    finally:
        ray.shutdown()
