"""One moto server per test session, on loopback, for every test that talks to AWS (pytest plugin, see conftest).

moto runs in server mode (a real HTTP endpoint in a thread of this process), so boto3 goes through its whole
stack, the same as against AWS, and processes the tests start reach it through `AWS_ENDPOINT_URL`. Each test gets
state of its own through fresh resource names (`make_aws_settings`: a random suffix on every table, bucket, queue
and topic) rather than a wipe of the server: the infra harness (tests/infra) deploys its stacks once per session
on this same server, and `POST /moto-api/reset` between tests would delete them. `MotoServer.reset()` is there for
a test that needs an empty server and runs alone. Credentials are fake and the shared AWS config files are hidden,
so nothing a developer has configured can send a request to a real account.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # boto3 is imported by the tests that use AWS, not by every test session
    import httpx

    from pkgc.farm.aws_settings import AwsSettings
    from pkgc.farm.ports import FarmPorts
    from tests.apigw_bridge import Bridge

REGION = "us-east-1"
LOOPBACK_NO_PROXY = "127.0.0.1,localhost,::1"
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass
class MotoServer:
    endpoint: str
    _server: object

    def reset(self) -> None:
        """Forget every resource (tables, queues, buckets, topics) of every service."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST", data=b"")
        with opener.open(request, timeout=10) as answer:
            if answer.status != 200:
                raise RuntimeError(f"moto reset answered {answer.status}")

    def env(self) -> dict[str, str]:
        """What a process needs to reach this server and only this server."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CONFIG_FILE": "/nonexistent/pkgc-tests/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/pkgc-tests/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": LOOPBACK_NO_PROXY,
            "no_proxy": LOOPBACK_NO_PROXY,
        }


# The services whose writes AWS applies atomically (a DynamoDB item's conditional write, an S3 conditional put).
_ATOMIC_SERVICES = (b"/dynamodb/aws4_request", b"/s3/aws4_request")


def _service_of(environ: dict[str, Any]) -> bytes:
    """The service a signed request is for, from its SigV4 credential scope (`.../REGION/SERVICE/aws4_request`)."""
    authorization = str(environ.get("HTTP_AUTHORIZATION", "")).encode("latin-1", "replace")
    return next((scope for scope in _ATOMIC_SERVICES if scope in authorization), b"")


class AtomicWrites:
    """WSGI middleware: one DynamoDB or S3 request at a time, as AWS applies each conditional write atomically.

    moto's backends check a condition and then write without a lock, so under a loaded machine two threads of its
    server can both pass `attribute_not_exists` or `IfNoneMatch`: a race real AWS never has, which made the
    concurrency tests of the adapters flaky. SQS and the rest stay concurrent (a long-poll receive must not hold
    everyone up).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        service = _service_of(environ)
        reading_s3 = service == b"/s3/aws4_request" and environ.get("REQUEST_METHOD") in ("GET", "HEAD")
        if not service or reading_s3:
            return self.app(environ, start_response)
        with self.lock:
            # The body is produced inside the lock: moto's answer is a list of bytes already made by then.
            return list(self.app(environ, start_response))


def _threaded_moto_server() -> Any:
    """moto's ThreadedMotoServer on 127.0.0.1, port 0, its app wrapped in AtomicWrites."""
    from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app
    from werkzeug.serving import make_server

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = AtomicWrites(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(self._ip_address, self._port, app, True)
            self._server_ready_event.set()
            self._server.serve_forever()

    return Server(ip_address="127.0.0.1", port=0, verbose=False)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """Started on first use, stopped at the end of the session; port 0 lets the kernel choose a free port."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per AWS call otherwise
    server = _threaded_moto_server()
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(endpoint=f"http://{host}:{port}", _server=server)
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment pointed at the session's moto server (for this test only)."""
    for name in (*_PROXY_VARIABLES, "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    env = moto_server.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def make_aws_settings(
    moto: MotoServer, platforms: Sequence[str] = ("linux-x86_64",), *, max_receive_count: int = 5, **overrides: object
) -> AwsSettings:
    """Fresh resource names (a test may make several farms) and the resources themselves, on `moto`."""
    from pkgc.farm.adapters.aws import create_resources
    from pkgc.farm.aws_settings import AwsSettings

    suffix = uuid.uuid4().hex[:8]
    settings = AwsSettings(
        builds_table=f"pkgc-builds-{suffix}",
        catalog_table=f"pkgc-catalog-{suffix}",
        tokens_table=f"pkgc-tokens-{suffix}",
        bucket=f"pkgc-blobs-{suffix}",
        region=REGION,
        endpoint_url=moto.endpoint,
    )
    settings = create_resources(settings, platforms, prefix=f"pkgc-{suffix}", max_receive_count=max_receive_count)
    return replace(settings, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def aws_settings(moto_server: MotoServer, aws_env: dict[str, str]) -> AwsSettings:
    """A farm's worth of fresh AWS resources on the session's moto (one platform, redrive after 5 receives)."""
    return make_aws_settings(moto_server)


@dataclass
class LambdaFarm:
    """A farm on moto with its API Lambda behind the loopback API Gateway bridge (see `lambda_farm_on`)."""

    env: dict[str, str]
    ports: FarmPorts
    token: str
    bridge: Bridge = field(repr=False)

    def api(self) -> httpx.Client:
        import httpx

        return httpx.Client(base_url=self.bridge.url, timeout=60, trust_env=False)


@contextlib.contextmanager
def lambda_farm_on(
    moto: MotoServer,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    *,
    token_name: str,
    max_receive_count: int = 5,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LambdaFarm]:
    """Fresh AWS resources for `platform`, the Lambda's environment set in this process, the curated hello
    published, an admin token, and a cold API container behind a started bridge (shut down afterwards)."""
    from pkgc.farm import aws_lambda
    from pkgc.farm.bootstrap import FarmConfig, farm_service, open_ports
    from pkgc.farm.token_admin import create_token
    from pkgc.recipes import bundled_recipe_dir
    from tests.apigw_bridge import Bridge

    settings = make_aws_settings(moto, (platform,), max_receive_count=max_receive_count)
    env = {**aws_env, **settings.to_env(), **(extra_env or {})}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = FarmConfig.from_env(env)
    ports = open_ports(config)
    hello = (bundled_recipe_dir() / "hello.toml").read_text()
    assert farm_service(config, ports=ports).publish_recipes([("hello.toml", hello)]) == []
    assert ports.tokens is not None
    token = create_token(ports.tokens, token_name).secret
    aws_lambda.forget_container()
    bridge = Bridge(aws_lambda.api_handler).start()
    try:
        yield LambdaFarm(env, ports, token, bridge)
    finally:
        bridge.shutdown()
        aws_lambda.forget_container()
