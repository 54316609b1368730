"""The farm's Lambda entry points (infra/api.yaml): `api_handler` and `metrics_handler`.

`api_handler` is the same FastAPI app the embedded farm serves (pkgc/farm/api.py), over the AWS adapters, through
Mangum (API Gateway REST proxy events in, proxy responses out; no lifespan: the app keeps no state to open or
close). `metrics_handler` runs every minute (EventBridge): it buries dead jobs (their builds marked failed with the
reason) and publishes the backlog per platform for the workers' autoscaling (pkgc/farm/housekeeping.py).

Everything comes from the composition root (pkgc/farm/bootstrap.py, `FarmConfig.from_env()`): the wait long-poll's
poll interval and length too (about 1 s and 20 s on AWS, inside API Gateway's 29 s). The ports, their boto3
clients, the service with its caches and the app are made once per container, at the first invocation rather than
at import: importing this module costs nothing, a misconfigured function fails its first request with the reason
in its log, and the next request tries again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pkgc.farm.bootstrap import FarmConfig, backlog_metrics, build_lifecycle, farm_access, farm_service, open_ports
from pkgc.farm.ports import BacklogMetrics, FarmPorts

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class _Container:
    """What one Lambda container keeps between invocations."""

    config: FarmConfig
    ports: FarmPorts
    api: LambdaHandler | None = None
    metrics: BacklogMetrics | None = None


_lock = threading.Lock()
_container: _Container | None = None


def _get_container() -> _Container:
    global _container
    with _lock:
        if _container is None:
            config = FarmConfig.from_env()
            _container = _Container(config=config, ports=open_ports(config))
        return _container


def forget_container() -> None:
    """Drop what this container made (tests: the next invocation reads the environment again)."""
    global _container
    with _lock:
        _container = None


def _api(container: _Container) -> LambdaHandler:
    with _lock:
        if container.api is None:
            from mangum import Mangum  # the web stack is imported by the API function only

            from pkgc.farm.api import create_app

            config, ports = container.config, container.ports
            app = create_app(farm_service(config, ports=ports), access=farm_access(config, ports))
            # Starlette's ASGIApp and Mangum's ASGI protocol describe the same callable in two typings.
            handler: LambdaHandler = Mangum(app, lifespan="off")  # type: ignore[arg-type]
            container.api = handler
        return container.api


def api_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (REST, proxy integration) → the farm's API."""
    return _api(_get_container())(event, context)


def metrics_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge, every minute: bury dead jobs, then publish `pkgc/Backlog` per platform. Returns a summary."""
    from pkgc.farm.housekeeping import tend

    container = _get_container()
    with _lock:
        if container.metrics is None:
            container.metrics = backlog_metrics(container.config)
        metrics = container.metrics
    lifecycle = build_lifecycle(container.config, ports=container.ports)
    return tend(lifecycle, metrics).summary()
