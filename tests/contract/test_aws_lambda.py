"""The Lambda entry points on moto: `api_handler` fed API Gateway REST proxy events (through the loopback bridge of
tests/apigw_bridge.py), made once per container; `metrics_handler` burying dead jobs and publishing pkgc/Backlog."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pkgc.core.platform import detect_platform
from pkgc.core.protocol import BuildStatus
from pkgc.farm import aws_lambda
from tests.apigw_bridge import rest_event
from tests.moto_server import LambdaFarm, MotoServer, lambda_farm_on

_HERE = detect_platform()
# A platform of this test session's own (the moto server and its CloudWatch metrics are shared by the session):
# this machine's os, architecture and C library, a C library version no other test uses.
PLATFORM = f"{_HERE.os}-{_HERE.arch}-{_HERE.libc}-1.{uuid.uuid4().int % 10**4}.{uuid.uuid4().int % 10**4}"


@pytest.fixture
def lambda_farm(
    moto_server: MotoServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[LambdaFarm]:
    extra = {"PKGC_FARM_WAIT_POLL_SECONDS": "0.2"}
    with lambda_farm_on(
        moto_server, aws_env, monkeypatch, PLATFORM, token_name="lambda-test", max_receive_count=2, extra_env=extra
    ) as farm:
        yield farm


def _resolve_body() -> dict[str, Any]:
    return {"packages": [{"name": "hello"}]}


def test_the_api_answers_proxy_events_and_makes_its_clients_once(lambda_farm: LambdaFarm) -> None:
    with lambda_farm.api() as api:
        health = api.get("/v1/health")
        assert health.status_code == 200 and health.json()["platforms"] == [PLATFORM]
        container = aws_lambda._container
        assert container is not None and container.api is not None
        assert api.get("/v1/packages", params={"q": "hell"}).json()["results"][0]["name"] == "hello"
        refused = api.post("/v1/resolve", json=_resolve_body())
        assert refused.status_code == 401 and refused.json()["error"], "an AWS farm asks for a token to build"
        made = api.post("/v1/resolve", json=_resolve_body(), headers={"Authorization": f"Bearer {lambda_farm.token}"})
        assert made.status_code == 200, made.text
        (build,) = made.json()["builds"]
        assert build["status"] == "queued"
        bad = api.post("/v1/wait", json={"keys": ["nope"]})
        assert bad.status_code == 422 and "reason" in bad.json()
        started = time.monotonic()
        waited = api.post("/v1/wait", json={"keys": [build["key"]], "timeout": 1})
        assert waited.status_code == 200 and waited.json()["pending"] == [build["key"]]
        assert time.monotonic() - started < 5
    assert aws_lambda._container is container, "one container: ports and app made once, at the first invocation"
    assert lambda_farm.bridge.invocations == 6


def test_the_long_poll_ends_inside_api_gateways_limit(lambda_farm: LambdaFarm) -> None:
    """A client asking for the protocol's longest wait gets its answer within the configured 20 s (not 29)."""
    key = "e" * 64
    from pkgc.farm.ports import BuildRecord

    lambda_farm.ports.builds.create_if_absent(
        BuildRecord(key=key, name="hello", version="2.10", options={}, spec={}, platform=PLATFORM, enqueued_at=time.time())
    )
    event = rest_event("POST", "/v1/wait", {"content-type": ["application/json"]}, json.dumps({"keys": [key]}).encode())
    started = time.monotonic()
    response = lambda_farm.bridge.call(event)
    elapsed = time.monotonic() - started
    assert response is not None and response["statusCode"] == 200
    assert json.loads(response["body"])["pending"] == [key]
    assert 19 <= elapsed < 25, elapsed


def test_metrics_handler_buries_dead_jobs_and_publishes_the_backlog(lambda_farm: LambdaFarm) -> None:
    ports = lambda_farm.ports
    with lambda_farm.api() as api:
        answer = api.post("/v1/resolve", json=_resolve_body(), headers={"Authorization": f"Bearer {lambda_farm.token}"})
        key = answer.json()["builds"][0]["key"]
    queue = ports.queues.for_platform(PLATFORM)
    for _ in range(2):  # two workers took the job and crashed (redrive after 2 receives)
        job = queue.receive(visibility_timeout=1, wait=5)
        assert job is not None and job.body == key
        assert ports.builds.acquire_lease(key, "doomed", time.time(), 0.5) is not None
        time.sleep(1.2)
    assert queue.receive(visibility_timeout=1, wait=1) is None and queue.dead_letter_count() == 1
    queue.send("f" * 64)  # a job waiting: the backlog counts it

    summary = aws_lambda.metrics_handler({"source": "aws.events"}, None)

    assert summary["backlog"] == {PLATFORM: 1}
    (dead,) = summary["dead_letters"][PLATFORM]
    assert dead["key"] == key and dead["outcome"] == "failed"
    record = ports.builds.get(key)
    assert record is not None and record.status == BuildStatus.FAILED
    assert record.error.startswith("the worker crashed 2 times building it; see its log")
    assert queue.dead_letter_count() == 0
    with lambda_farm.api() as api:
        assert api.get(f"/v1/builds/{key}").json()["error"] == record.error, "what the client is shown"

    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name=lambda_farm.env["AWS_REGION"])
    metrics = cloudwatch.list_metrics(Namespace="pkgc", MetricName="Backlog")["Metrics"]
    assert {"Name": "Platform", "Value": PLATFORM} in [d for m in metrics for d in m["Dimensions"]]
    now = time.time()
    stats = cloudwatch.get_metric_statistics(
        Namespace="pkgc",
        MetricName="Backlog",
        Dimensions=[{"Name": "Platform", "Value": PLATFORM}],
        StartTime=now - 600,
        EndTime=now + 60,
        Period=60,
        Statistics=["Maximum"],
    )
    assert [p["Maximum"] for p in stats["Datapoints"]] == [1.0]
