"""End-to-end on the AWS adapters, with real processes, against the session's moto server on loopback.

The client (`pkgc install hello --wait`, a subprocess configured with the farm's URL and a token) talks to the API
Lambda (`pkgc.farm.aws_lambda.api_handler`, fed API Gateway REST proxy events by tests/apigw_bridge.py, itself a
subprocess with the Lambda's environment), which reads and writes DynamoDB and sends the job to SQS; a worker
process (`python -m pkgc.worker --backend aws`) compiles GNU hello from the prefetched sources, stores the artifact
in S3 and finishes the build; the client downloads the artifact through the presigned URL the API returned (moto
serves it, through a recording proxy) and installs it into a prefix, where it runs.

Then the AWS points of issue 8: 20 concurrent identical resolves (across two API containers) make one build and one
job; a worker killed with SIGKILL in the middle of a build is redelivered and the build completes; a job that kills
every worker that takes it reaches the dead-letter queue after the redrive limit, and the metrics Lambda marks its
build failed with a reason the client shows.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from pkgc.core.platform import detect_platform
from pkgc.core.protocol import BuildStatus
from pkgc.farm.bootstrap import FarmConfig, farm_service, open_ports
from pkgc.farm.ports import BuildRecord, FarmPorts
from pkgc.farm.token_admin import create_token
from pkgc.recipes import bundled_recipe_dir
from pkgc.worker.prefetch import debian_excerpt, default_dir, seed_cache
from tests.conftest import require_bubblewrap, seed_debian_sources, subprocess_env, user_env
from tests.moto_server import MotoServer, make_aws_settings

pytestmark = pytest.mark.e2e

PLATFORM = str(detect_platform())  # the client's own: the farm serves this machine's platform
REPO = Path(__file__).resolve().parents[2]
# The job's visibility and the lease: a killed worker's job comes back within seconds. The lease is shorter, so a
# redelivered job finds it expired (a live lease would defer the job as a fresh message, resetting SQS's count).
VISIBILITY, LEASE = "8", "5"


class _Recorder(http.server.ThreadingHTTPServer):
    """A recording reverse proxy in front of moto, the Lambda's AWS endpoint: presigned URLs point here, so the
    client's artifact downloads pass through it and their headers can be checked."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.upstream = upstream
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path with query, headers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecorderHandler(http.server.BaseHTTPRequestHandler):
    server: _Recorder
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        headers = {k: v for k, v in self.headers.items()}
        self.server.requests.append((self.command, self.path, headers))
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection", "content-length")}
        with httpx.Client(trust_env=False, timeout=60) as client:
            answer = client.request(self.command, self.server.upstream + self.path, headers=forwarded, content=body)
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(answer.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class _NoInterruption(http.server.BaseHTTPRequestHandler):
    """The instance metadata service of an instance nobody is taking away: 404 for everything."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_PUT = _answer


def _serve(server: http.server.ThreadingHTTPServer) -> http.server.ThreadingHTTPServer:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class AwsFlow:
    tmp: Path
    moto: MotoServer
    farm_env: dict[str, str]  # the Lambda's and the workers' environment (PKGC_FARM_BACKEND=aws, PKGC_AWS_*, moto)
    ports: FarmPorts
    token: str
    recorder: _Recorder
    imds_url: str
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    api_url: str = ""

    def start_api(self) -> str:
        """One more API "container": a bridge process running api_handler; returns its URL (…/farm)."""
        env = subprocess_env({**self.farm_env, "AWS_ENDPOINT_URL": self.recorder.url})
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.apigw_bridge"], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        self.processes.append(process)
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"the bridge did not start: {url!r}"
        return url

    def start_worker(self, name: str, debian_sources: str = "") -> subprocess.Popen[str]:
        """A worker process with the AWS adapters, in a session of its own (so that it can be killed with its
        build, as when its instance dies); `debian_sources`: a Sources excerpt whose tarballs it has cached."""
        workdir = self.tmp / f"worker-{name}"
        seed_cache(workdir / "sources", ["hello"])
        if debian_sources:
            seed_debian_sources(workdir / "sources", debian_sources)
        env = subprocess_env(
            {
                **self.farm_env,
                "PKGC_FETCH_LOOPBACK_ONLY": "1",
                "PKGC_REQUIRE_SANDBOX": "1",
                "PKGC_FARM_VISIBILITY_TIMEOUT": VISIBILITY,
                "PKGC_FARM_LEASE_TTL": LEASE,
                "PKGC_WORKER_IMDS_URL": self.imds_url,
                "PKGC_WORKER_IMDS_INTERVAL": "1",
            }
        )
        log = (self.tmp / f"worker-{name}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "pkgc.worker", "--backend", "aws", "--platform", PLATFORM, "--id", name,
             "--workdir", str(workdir), "--jobs", "2"],
            env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def client_env(self, **settings: str) -> dict[str, str]:
        return user_env(self.tmp / "user", PKGC_FARM=self.api_url, PKGC_TOKEN=self.token, **settings)

    def pkgc(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pkgc", *args],
            env=self.client_env(), capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def resolve(self) -> str:
        with httpx.Client(base_url=self.api_url, timeout=60, trust_env=False) as api:
            answer = api.post(
                "/v1/resolve",
                json={"packages": [{"name": "hello"}]},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["builds"][0]["key"])

    def record(self, key: str) -> BuildRecord:
        found = self.ports.builds.get(key)
        assert found is not None
        return found

    def until(self, what: str, check: Callable[[], bool], limit: float = 600, step: float = 0.3) -> None:
        deadline = time.monotonic() + limit
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {limit} s; worker logs:\n{self.worker_logs()}")
            for process in self.processes:
                assert process.poll() is None or process.returncode in (0, -signal.SIGKILL), self.worker_logs()
            time.sleep(step)

    def worker_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("worker-*.log")))

    def kill(self, process: subprocess.Popen[str]) -> None:
        """SIGKILL the worker and its build (its process group): no clean-up, no release, no ack."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def metrics_lambda(self) -> dict[str, Any]:
        """One run of the metrics Lambda, in a process of its own with the function's environment."""
        code = "import json; from pkgc.farm.aws_lambda import metrics_handler; print(json.dumps(metrics_handler({}, None)))"
        done = subprocess.run(
            [sys.executable, "-c", code], env=subprocess_env(self.farm_env), cwd=REPO,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture
def make_flow(
    tmp_path: Path, moto_server: MotoServer, aws_env: dict[str, str]
) -> Iterator[Callable[..., AwsFlow]]:
    """An AWS farm of its own on the session's moto (fresh tables, bucket, queue + DLQ), with hello published,
    a token, and its API started; workers are started by the test."""
    require_bubblewrap()
    imds = _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoInterruption))
    recorder = _serve(_Recorder(moto_server.endpoint))
    assert isinstance(recorder, _Recorder)
    flows: list[AwsFlow] = []

    def make(max_receive_count: int = 5, builds_per_hour: int = 20, in_flight: int = 10) -> AwsFlow:
        settings = make_aws_settings(moto_server, (PLATFORM,), max_receive_count=max_receive_count)
        farm_env = {**moto_server.env(), **settings.to_env(), "PKGC_FARM_WAIT_POLL_SECONDS": "0.5"}
        config = FarmConfig.from_env(farm_env)
        ports = open_ports(config)
        hello = (bundled_recipe_dir() / "hello.toml").read_text()
        assert farm_service(config, ports=ports).publish_recipes([("hello.toml", hello)]) == []
        assert ports.tokens is not None
        token = create_token(ports.tokens, "e2e", builds_per_hour=builds_per_hour, in_flight=in_flight).secret
        flow = AwsFlow(
            tmp=tmp_path, moto=moto_server, farm_env=farm_env, ports=ports, token=token, recorder=recorder,
            imds_url=f"http://127.0.0.1:{imds.server_address[1]}",
        )  # fmt: skip
        flows.append(flow)
        flow.api_url = flow.start_api()
        return flow

    try:
        yield make
    finally:
        for flow in flows:
            for process in flow.processes:
                if process.poll() is None:
                    if process.args[1:3] == ["-m", "pkgc.worker"]:
                        os.killpg(process.pid, signal.SIGKILL)
                    else:
                        process.kill()
                    process.wait(timeout=30)
        imds.shutdown()
        recorder.shutdown()


def test_install_hello_through_the_lambda_api_a_worker_and_s3(make_flow: Callable[..., AwsFlow]) -> None:
    flow = make_flow()
    flow.start_worker("w1")
    prefix = flow.tmp / "prefix"

    installed = flow.pkgc("install", "hello", "--wait", "--prefix", str(prefix))

    assert installed.returncode == 0, f"{installed.stderr}\n{flow.worker_logs()}"
    ran = subprocess.run([str(prefix / "bin" / "hello")], capture_output=True, text=True, timeout=30, check=False)
    assert ran.returncode == 0 and ran.stdout.strip() == "Hello, world!"
    listed = flow.pkgc("list", "--prefix", str(prefix), "--json")
    assert listed.returncode == 0 and "hello" in listed.stdout

    (record,) = flow.ports.builds.builds_of("hello")
    assert record.status == BuildStatus.READY and record.attempts == 1 and record.platform == PLATFORM
    assert record.artifact is not None and flow.ports.blobs.exists(record.artifact), "the artifact is in S3"
    downloads = [(path, headers) for method, path, headers in flow.recorder.requests if method == "GET" and
                 record.artifact in path]  # fmt: skip
    assert downloads, "the client downloaded the artifact through the presigned URL"
    for path, headers in downloads:
        assert "X-Amz-Signature=" in path, "a presigned URL"
        assert not any(name.lower() == "authorization" for name in headers), "no credentials sent to S3"
        assert flow.token not in json.dumps(headers), "the token goes to the API only"


def test_install_a_generated_package_through_the_aws_farm(make_flow: Callable[..., AwsFlow]) -> None:
    """The Debian catalog on AWS: the operator's `pkgc farm catalog update` (PKGC_FARM_BACKEND=aws, a real
    process) publishes the index to S3; the API Lambda generates libevdevplus's recipe from it, a worker builds it
    (cmake, detected from the tree) and the client installs it."""
    flow = make_flow()
    excerpt = debian_excerpt(default_dir())
    if not excerpt.is_file():
        pytest.fail(f"{excerpt} is missing: run 'python -m pkgc.worker.prefetch' (bash .ci/run does)", pytrace=False)
    operator = subprocess_env({**flow.farm_env, "HOME": str(flow.tmp / "operator")})
    updated = subprocess.run(
        [sys.executable, "-m", "pkgc", "farm", "catalog", "update", "--from", str(excerpt)],
        env=operator, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert updated.returncode == 0 and "catalog/debian/" in updated.stdout, updated.stderr
    flow.start_worker("debian", debian_sources=excerpt.read_text(encoding="utf-8"))
    prefix = flow.tmp / "prefix"

    installed = flow.pkgc("install", "libevdevplus", "--wait", "--prefix", str(prefix))

    assert installed.returncode == 0, f"{installed.stderr}\n{flow.worker_logs()}"
    assert (prefix / "lib" / "libevdevPlus.so").exists()
    info = flow.pkgc("info", "libevdevplus", "--json", "--prefix", str(prefix))
    assert info.returncode == 0 and json.loads(info.stdout)["origin"] == "generated", info.stderr
    (record,) = flow.ports.builds.builds_of("libevdevplus")
    assert record.status == BuildStatus.READY and record.spec["recipe_content"]["origin"] == "generated"


def test_twenty_concurrent_identical_resolves_make_one_build_and_one_job(make_flow: Callable[..., AwsFlow]) -> None:
    flow = make_flow(builds_per_hour=100, in_flight=50)  # racing requests are each charged (errs toward the quota)
    second_container = flow.start_api()
    urls = [flow.api_url, second_container] * 10

    def resolve(url: str) -> dict[str, Any]:
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as api:
            answer = api.post(
                "/v1/resolve",
                json={"packages": [{"name": "hello"}]},
                headers={"Authorization": f"Bearer {flow.token}"},
            )
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    barrier = threading.Barrier(len(urls))

    def at_once(url: str) -> dict[str, Any]:
        barrier.wait()
        return resolve(url)

    with ThreadPoolExecutor(len(urls)) as pool:
        answers = list(pool.map(at_once, urls))

    keys = {answer["builds"][0]["key"] for answer in answers}
    assert len(keys) == 1
    assert len(flow.ports.builds.builds_of("hello")) == 1, "one build"
    queue = flow.ports.queues.for_platform(PLATFORM)
    assert queue.depth() == 1, "one job"
    job = queue.receive(visibility_timeout=30, wait=2)
    assert job is not None and job.body == keys.pop()
    assert queue.receive(visibility_timeout=30, wait=1) is None


def test_a_worker_killed_mid_build_is_redelivered_and_the_build_completes(make_flow: Callable[..., AwsFlow]) -> None:
    flow = make_flow()
    key = flow.resolve()
    first = flow.start_worker("first")
    flow.until("the first worker builds", lambda: (r := flow.record(key)).status == BuildStatus.BUILDING and
               (r.lease_owner or "").startswith("first-"))  # fmt: skip
    time.sleep(1.5)  # in the middle of configure
    flow.kill(first)

    flow.start_worker("second")
    flow.until("the build completes", lambda: flow.record(key).status.finished)

    record = flow.record(key)
    assert record.status == BuildStatus.READY, record.error
    assert record.attempts == 2, "the killed worker's attempt counted, the second finished it"
    assert (record.lease_owner or "") == "" and record.artifact is not None
    queue = flow.ports.queues.for_platform(PLATFORM)
    flow.until("the job is acknowledged", lambda: queue.depth() == 0, limit=30)
    assert queue.dead_letter_count() == 0


def test_a_job_that_kills_every_worker_goes_to_the_dead_letter_queue_and_its_build_fails(
    make_flow: Callable[..., AwsFlow],
) -> None:
    # The redrive limit below the lifecycle's own attempt limit (3), so that SQS's count is the one that ends it.
    flow = make_flow(max_receive_count=2)
    key = flow.resolve()
    queue = flow.ports.queues.for_platform(PLATFORM)
    for attempt in (1, 2):
        worker = flow.start_worker(f"doomed{attempt}")
        flow.until(f"worker {attempt} takes the build", lambda a=attempt: (r := flow.record(key)).attempts == a and
                   r.status == BuildStatus.BUILDING)  # fmt: skip
        flow.kill(worker)  # the build kills its worker, every time
    flow.start_worker("next")  # its receive finds the job received twice: SQS moves it to the DLQ
    flow.until("the job is dead-lettered", lambda: queue.dead_letter_count() == 1, limit=120)
    assert flow.record(key).status == BuildStatus.BUILDING, "nothing else would ever finish it"

    summary = flow.metrics_lambda()

    assert [d["outcome"] for d in summary["dead_letters"][PLATFORM]] == ["failed"]
    assert summary["backlog"] == {PLATFORM: 0}
    record = flow.record(key)
    assert record.status == BuildStatus.FAILED and record.error is not None
    assert record.error.startswith("the worker crashed 2 times building it; see its log")
    assert queue.dead_letter_count() == 0, "the dead letter is deleted once its build is failed"

    shown = flow.pkgc("install", "hello", "--wait", "--prefix", str(flow.tmp / "prefix"), timeout=120)
    assert shown.returncode == 5, shown.stderr
    assert "build of hello@2.10 failed: the worker crashed 2 times building it" in shown.stderr


def test_pkgc_farm_publish_through_the_lambda_api_with_an_admin_token(make_flow: Callable[..., AwsFlow]) -> None:
    """The recipe step of an AWS farm: `pkgc farm publish` (a real CLI process) through the API Lambda into the
    DynamoDB catalog and its S3 snapshot; then `pkgc search` lists the new package. A user token is refused."""
    flow = make_flow()
    assert flow.ports.tokens is not None
    admin = create_token(flow.ports.tokens, "ops", admin=True).secret
    hello = (bundled_recipe_dir() / "hello.toml").read_text()
    salute = flow.tmp / "recipes" / "salute.toml"
    salute.parent.mkdir()
    salute.write_text(
        hello.replace('name = "hello"', 'name = "salute"').replace(
            "GNU Hello: prints a friendly, translated greeting", "a salutation in other words"
        )
    )
    broken = salute.with_name("broken.toml")
    broken.write_text('name = "broken"\nsummary = "no versions"\nhomepage = "h"\nlicense = "MIT"\n')

    def pkgc(*args: str, token: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pkgc", *args], env={**flow.client_env(), "PKGC_TOKEN": token},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    before = pkgc("search", "salute", token=flow.token)
    assert before.returncode == 3 and before.stdout.strip() == "", before.stderr  # and the catalog copy is fresh
    assert before.stderr.strip() == "error: no package matches 'salute'", "no Debian catalog on AWS: no hint"

    refused = pkgc("farm", "publish", str(salute), token=flow.token)
    assert refused.returncode == 11, refused.stderr
    assert refused.stderr.strip().splitlines() == ["error: publishing recipes needs an admin token; 'e2e' is not one"]

    published = pkgc("farm", "publish", str(salute), str(broken), token=admin)
    assert published.returncode == 1, published.stderr  # one recipe was skipped
    assert published.stdout.splitlines() == [
        "skipped recipe broken.toml: at least one [[versions]] entry is needed",
        "published 1 recipe: salute 2.10",
    ]
    assert flow.ports.catalog.get_recipe_text("salute") == salute.read_text()
    assert flow.ports.catalog.get_recipe_text("broken") is None

    found = pkgc("search", "salute", token=flow.token)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "salute 2.10 - a salutation in other words"
    snapshot = json.loads(flow.ports.catalog.read_snapshot() or b"{}")
    assert "salute" in [p["name"] for p in snapshot["packages"]]

    # A request body over the other routes' 64 KiB passes API Gateway's stand-in and the Lambda (this route: 1 MiB).
    padded = []
    for index in (1, 2):
        path = salute.with_name(f"padded{index}.toml")
        path.write_text(salute.read_text().replace('name = "salute"', f'name = "padded{index}"') + "#" * 40_000 + "\n")
        padded.append(str(path))
    large = pkgc("farm", "publish", *padded, token=admin)
    assert large.returncode == 0, large.stderr
    assert large.stdout.strip() == "published 2 recipes: padded1 2.10, padded2 2.10"

    starter = pkgc("farm", "publish", "--starter", "--json", token=admin)
    assert starter.returncode == 0, starter.stderr
    names = [p["name"] for p in json.loads(starter.stdout)["published"]]
    assert names == sorted(p.stem for p in bundled_recipe_dir().glob("*.toml"))

    for args, error in [
        ((str(flow.tmp / "missing.toml"),), f"error: cannot read recipe {flow.tmp / 'missing.toml'}: No such file"),
        ((str(broken.with_name("bad.toml")),), "error: recipe "),
        ((), "error: no recipes to publish: name recipe files, or pass --starter"),
    ]:
        if args and args[0].endswith("bad.toml"):
            Path(args[0]).write_text('name = "x"\nsummary = \n')
        local = pkgc("farm", "publish", *args, token=admin)
        assert local.returncode == 2, local.stderr
        (line,) = local.stderr.strip().splitlines()
        assert line.startswith(error), line
    assert "is not valid TOML" in pkgc("farm", "publish", str(broken.with_name("bad.toml")), token=admin).stderr
