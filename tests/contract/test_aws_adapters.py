"""What only the AWS adapters do: settings from the environment, vendor errors at the boundary, one round trip for
a lost create, unprocessed BatchGetItem keys, S3 headers and URLs, SNS, and the queue's AWS-specific choices.
The port contracts themselves are in test_ports.py; these run boto3 against the session's moto server."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from pkgc.core.errors import FarmUnavailable, UsageError
from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.aws import (
    IMMUTABLE_CACHE_CONTROL,
    AwsClients,
    AwsSettings,
    DynamoBuildStore,
    S3BlobStore,
    SnsNotifier,
    SqsJobQueue,
    aws_ports,
)
from pkgc.farm.ports import BuildRecord
from tests.moto_server import MotoServer, make_aws_settings

PLATFORM = "linux-x86_64"


def record(key: str, **changes: Any) -> BuildRecord:
    fields: dict[str, Any] = {"name": "hello", "version": "2.10", "options": {}, "spec": {"x": 1}, **changes}
    return BuildRecord(key=key, **fields)


class Recording:
    """A boto3 client that notes each operation it is asked for (and can be told to alter one's answers)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Any:
        method = getattr(self._client, operation)

        def call(**kwargs: Any) -> Any:
            self.calls.append((operation, kwargs))
            return method(**kwargs)

        return call


def opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never through a proxy


# ------------------------------------------------------------------------------------------------------ settings


def full_env() -> dict[str, str]:
    return {
        "PKGC_AWS_BUILDS_TABLE": "pkgc-builds",
        "PKGC_AWS_CATALOG_TABLE": "pkgc-catalog",
        "PKGC_AWS_TOKENS_TABLE": "pkgc-tokens",
        "PKGC_AWS_BUCKET": "pkgc-blobs",
        "PKGC_AWS_QUEUES": json.dumps({PLATFORM: "https://sqs.eu-west-1.amazonaws.com/123456789012/pkgc-x86"}),
        "PKGC_AWS_CDN_URL": "https://d111111abcdef8.cloudfront.net",
        "PKGC_AWS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:pkgc-builds",
        "AWS_REGION": "eu-west-1",
    }


def test_settings_from_env_round_trip() -> None:
    settings = AwsSettings.from_env(full_env())
    assert settings.builds_table == "pkgc-builds" and settings.tokens_table == "pkgc-tokens"
    assert settings.queues == {PLATFORM: "https://sqs.eu-west-1.amazonaws.com/123456789012/pkgc-x86"}
    assert settings.cdn_url == "https://d111111abcdef8.cloudfront.net" and settings.region == "eu-west-1"
    assert settings.endpoint_url is None and settings.presign_seconds == 3600
    assert AwsSettings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"PKGC_AWS_BUILDS_TABLE": ""}, "PKGC_AWS_BUILDS_TABLE is not set"),
        ({"PKGC_AWS_BUCKET": "  "}, "PKGC_AWS_BUCKET is not set"),
        ({"PKGC_AWS_QUEUES": "{not json"}, "PKGC_AWS_QUEUES is not JSON"),
        ({"PKGC_AWS_QUEUES": '["a"]'}, "PKGC_AWS_QUEUES must be a JSON object"),
        ({"PKGC_AWS_QUEUES": '{"p": "file:///etc/passwd"}'}, "PKGC_AWS_QUEUES must be a JSON object"),
        ({"PKGC_AWS_CDN_URL": "javascript:alert(1)"}, "PKGC_AWS_CDN_URL is not an http(s) URL"),
        ({"PKGC_AWS_PRESIGN_SECONDS": "9999999"}, "PKGC_AWS_PRESIGN_SECONDS must be"),
        ({"AWS_REGION": ""}, "AWS_REGION (or AWS_DEFAULT_REGION) is not set"),
    ],
)
def test_settings_refuse_bad_environment_in_one_line(change: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        AwsSettings.from_env({**full_env(), **change})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_aws_ports_from_env_work_end_to_end(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    made = make_aws_settings(moto_server, (PLATFORM,))
    ports = aws_ports(AwsSettings.from_env({**aws_env, **made.to_env()}))
    created, _ = ports.builds.create_if_absent(record("a" * 64, platform=PLATFORM))
    assert created
    ports.queues.for_platform(PLATFORM).send("a" * 64)
    job = ports.queues.for_platform(PLATFORM).receive(visibility_timeout=30, wait=2)
    assert job is not None and job.body == "a" * 64
    ports.catalog.write_snapshot(b"[]")
    assert ports.catalog.read_snapshot() == b"[]" and ports.blobs.exists("catalog/snapshot.json")
    assert ports.queues.platforms() == [PLATFORM]


# -------------------------------------------------------------------------------------------- errors at the edge


def test_unreachable_endpoint_is_farm_unavailable() -> None:
    client = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(FarmUnavailable) as caught:
        DynamoBuildStore(client, "pkgc-builds").get("a" * 64)
    text = str(caught.value)
    assert "DynamoDB GetItem on table pkgc-builds failed" in text and "EndpointConnectionError" in text
    assert "\n" not in text


def test_missing_table_is_farm_unavailable_naming_it(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    settings = make_aws_settings(moto_server)
    builds = DynamoBuildStore(AwsClients(settings).dynamodb, "no-such-table")
    with pytest.raises(FarmUnavailable) as caught:
        builds.create_if_absent(record("a" * 64))
    assert "no-such-table" in str(caught.value) and "ResourceNotFoundException" in str(caught.value)
    with pytest.raises(FarmUnavailable):
        SqsJobQueue(AwsClients(settings).sqs, f"{moto_server.endpoint}/123456789012/no-such-queue").depth()


class Throttled:
    def get_item(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetItem")


def test_throttling_is_farm_unavailable_with_a_hint() -> None:
    with pytest.raises(FarmUnavailable) as caught:
        DynamoBuildStore(Throttled(), "pkgc-builds").get("a" * 64)
    assert "ThrottlingException: Rate exceeded" in str(caught.value)
    assert caught.value.hint is not None and "throttled" in caught.value.hint


def test_a_spec_too_large_for_an_item_is_refused(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    builds = aws_ports(make_aws_settings(moto_server)).builds
    with pytest.raises(UsageError, match="too large"):
        builds.create_if_absent(record("a" * 64, spec={"blob": "x" * 400_000}))
    assert builds.get("a" * 64) is None


# ----------------------------------------------------------------------------------------------------- DynamoDB


def test_loser_of_create_gets_the_record_in_one_round_trip(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    settings = make_aws_settings(moto_server)
    client = Recording(AwsClients(settings).dynamodb)
    builds = DynamoBuildStore(client, settings.builds_table)
    assert builds.create_if_absent(record("a" * 64, spec={"first": True}))[0]
    client.calls.clear()
    created, current = builds.create_if_absent(record("a" * 64, spec={"first": False}))
    assert not created and current.spec == {"first": True}
    assert [operation for operation, _ in client.calls] == ["put_item"], "ALL_OLD: no second read"


class Unprocessing(Recording):
    """Processes half the keys of each BatchGetItem call (none if `stuck`), as a throttled DynamoDB may."""

    def __init__(self, client: Any, *, stuck: bool = False) -> None:
        super().__init__(client)
        self.stuck = stuck

    def batch_get_item(self, **kwargs: Any) -> Any:
        self.calls.append(("batch_get_item", kwargs))
        request = kwargs["RequestItems"]
        table = next(iter(request))
        keys = request[table]["Keys"]
        done = 0 if self.stuck else (len(keys) + 1) // 2
        answer: dict[str, Any] = {"Responses": {table: []}}
        if done:
            answer = self._client.batch_get_item(RequestItems={table: {**request[table], "Keys": keys[:done]}})
        if keys[done:]:
            answer["UnprocessedKeys"] = {table: {**request[table], "Keys": keys[done:]}}
        return answer


def test_get_many_retries_unprocessed_keys_in_chunks_of_100(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    settings = make_aws_settings(moto_server)
    writer = DynamoBuildStore(AwsClients(settings).dynamodb, settings.builds_table)
    keys = [f"{i:064x}" for i in range(105)]
    for key in keys[:5] + keys[100:]:
        writer.create_if_absent(record(key))
    client = Unprocessing(AwsClients(settings).dynamodb)
    found = DynamoBuildStore(client, settings.builds_table).get_many(keys)
    assert set(found) == set(keys[:5] + keys[100:])
    sizes = [len(kwargs["RequestItems"][settings.builds_table]["Keys"]) for _, kwargs in client.calls]
    assert sizes == [100, 50, 25, 12, 6, 3, 1, 5, 2, 1], "chunks of 100; every unprocessed key asked again"

    stuck = Unprocessing(AwsClients(settings).dynamodb, stuck=True)
    with pytest.raises(FarmUnavailable, match="unprocessed after 3 tries"):
        DynamoBuildStore(stuck, settings.builds_table, max_batch_retries=2).get_many(keys[:5])
    assert len(stuck.calls) == 3


def test_builds_of_pages_through_the_index(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    settings = make_aws_settings(moto_server)
    client = Recording(AwsClients(settings).dynamodb)
    builds = DynamoBuildStore(client, settings.builds_table)
    for index in range(7):
        builds.create_if_absent(record(f"{index:064x}", created_at=float(index)))
    client.calls.clear()
    assert [r.created_at for r in builds.builds_of("hello", limit=5)] == [6.0, 5.0, 4.0, 3.0, 2.0]
    (operation, kwargs), *_ = client.calls
    assert operation == "query" and kwargs["IndexName"] == "by-name" and kwargs["ScanIndexForward"] is False


# ---------------------------------------------------------------------------------------------------------- S3


def test_content_blobs_are_immutable_and_presigned_urls_serve_them(
    moto_server: MotoServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    settings = make_aws_settings(moto_server)
    clients = AwsClients(settings)
    blobs = S3BlobStore(clients.s3, settings.bucket, presign_seconds=600)
    source = tmp_path / "a.tar.zst"
    source.write_bytes(b"artifact bytes" * 100)
    name = blobs.put_content("artifacts", source)
    head = clients.s3.head_object(Bucket=settings.bucket, Key=name)
    assert head["CacheControl"] == IMMUTABLE_CACHE_CONTROL == "public, max-age=31536000, immutable"
    url = blobs.url_for(name)
    parts = urlsplit(url)
    assert url.startswith(f"{moto_server.endpoint}/{settings.bucket}/{name}?")
    assert parse_qs(parts.query)["X-Amz-Expires"] == ["600"], "SigV4, with the bounded expiry"
    assert blobs.url_lifetime() == 600, "the port says how long its URLs serve (the service renews at half)"
    with opener().open(url, timeout=10) as answer:
        assert answer.read() == source.read_bytes()
        assert answer.headers["Cache-Control"] == IMMUTABLE_CACHE_CONTROL
    blobs.put_named("catalog/snapshot.json", b"[]")
    named = clients.s3.head_object(Bucket=settings.bucket, Key="catalog/snapshot.json")
    assert named["CacheControl"] == "no-cache", "the snapshot changes: never cached as immutable"


def test_url_for_uses_the_cdn_when_configured(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    settings = make_aws_settings(moto_server, cdn_url="https://d111111abcdef8.cloudfront.net/")
    blobs = aws_ports(settings).blobs
    name = "artifacts/sha256/ab/" + "ab" * 32 + ".tar.zst"
    assert blobs.url_for(name) == f"https://d111111abcdef8.cloudfront.net/{name}"
    assert blobs.url_lifetime() is None, "a CDN URL does not expire: the service keeps it"
    with pytest.raises(ValueError):
        blobs.url_for("../x")


def test_presign_expiry_is_bounded() -> None:
    with pytest.raises(ValueError):
        S3BlobStore(object(), "bucket", presign_seconds=8 * 24 * 3600)


# --------------------------------------------------------------------------------------------------------- SQS


def test_unknown_platform_names_the_platforms_served(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    router = aws_ports(make_aws_settings(moto_server, ("linux-x86_64", "linux-aarch64"))).queues
    with pytest.raises(UsageError, match=r"no build queue for platform 'windows-arm64'.*linux-aarch64, linux-x86_64"):
        router.for_platform("windows-arm64")


def test_depth_counts_waiting_and_in_flight_not_delayed(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    queue = aws_ports(make_aws_settings(moto_server)).queues.for_platform(PLATFORM)
    queue.send("now")
    queue.send("in-flight")
    queue.send("re-check later", delay=60)
    assert queue.depth() == 2
    assert queue.receive(visibility_timeout=30, wait=2) is not None
    assert queue.depth() == 2, "a job being built still counts"
    assert queue.dead_letter_count() == 0


def test_extend_with_a_stale_receipt_is_reported(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    queue = aws_ports(make_aws_settings(moto_server)).queues.for_platform(PLATFORM)
    queue.send("job")
    job = queue.receive(visibility_timeout=30, wait=2)
    assert job is not None
    queue.ack(job)
    with pytest.raises(FarmUnavailable, match="ChangeMessageVisibility"):
        queue.extend(job, 30)


def test_dead_letter_queue_is_found_through_the_redrive_policy(
    moto_server: MotoServer, aws_env: dict[str, str]
) -> None:
    settings = make_aws_settings(moto_server, max_receive_count=1)
    queue = SqsJobQueue(AwsClients(settings).sqs, settings.queues[PLATFORM])
    assert queue.dead_letter_url() is not None and queue.dead_letter_url() != queue.url
    queue.send("crashes every worker")
    assert queue.receive(visibility_timeout=0, wait=2) is not None
    assert queue.receive(visibility_timeout=0, wait=0) is None
    assert queue.dead_letter_count() == 1
    plain = AwsClients(settings).sqs.create_queue(QueueName=f"no-redrive-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    assert SqsJobQueue(AwsClients(settings).sqs, plain).dead_letter_count() == 0


# --------------------------------------------------------------------------------------------------------- SNS


def test_notifier_publishes_finished_builds(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    settings = make_aws_settings(moto_server)
    clients = AwsClients(settings)
    inbox = clients.sqs.create_queue(QueueName=f"inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    inbox_arn = clients.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert settings.topic_arn is not None
    clients.sns.subscribe(
        TopicArn=settings.topic_arn, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"}
    )
    finished = record("a" * 64, status=BuildStatus.READY, artifact="artifacts/x", sha256="s" * 64, platform=PLATFORM)
    aws_ports(settings).notifier.build_finished(finished)
    messages = clients.sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=2).get("Messages", [])
    assert len(messages) == 1
    event = json.loads(messages[0]["Body"])
    assert event["key"] == "a" * 64 and event["status"] == "ready" and event["platform"] == PLATFORM


def test_notifier_failure_is_logged_not_raised(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    settings = make_aws_settings(moto_server)
    notifier = SnsNotifier(AwsClients(settings).sns, "arn:aws:sns:us-east-1:123456789012:no-such-topic")
    notifier.build_finished(record("a" * 64, status=BuildStatus.FAILED, error="cc exited 1"))
    assert notifier.failures == 1
    SnsNotifier(AwsClients(settings).sns, None).build_finished(record("a" * 64))  # no topic: nothing to do


def test_the_composition_root_hands_the_presign_lifetime_to_the_blob_store(
    moto_server: MotoServer, aws_env: dict[str, str]
) -> None:
    from pkgc.farm.bootstrap import FarmConfig, open_ports

    env = {**full_env(), "PKGC_FARM_BACKEND": "aws", "PKGC_AWS_CDN_URL": "", "PKGC_AWS_PRESIGN_SECONDS": "120", **aws_env}
    assert open_ports(FarmConfig.from_env(env)).blobs.url_lifetime() == 120
    assert open_ports(FarmConfig.from_env({**env, "PKGC_AWS_PRESIGN_SECONDS": ""})).blobs.url_lifetime() == 3600
    for bad in ("0", "-5", "ten", str(8 * 24 * 3600)):
        with pytest.raises(UsageError, match="PKGC_AWS_PRESIGN_SECONDS"):
            FarmConfig.from_env({**env, "PKGC_AWS_PRESIGN_SECONDS": bad})


def test_an_unchanged_catalog_snapshot_is_not_transferred_again(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    """The service rereads the snapshot every few seconds; with all of Debian it is about 6 MB, so the adapter asks
    S3 with the ETag it has (If-None-Match) and S3's 304 transfers nothing."""
    settings = make_aws_settings(moto_server)
    ports = aws_ports(settings)
    statuses: list[int] = []
    ports.catalog._blobs._client.meta.events.register(  # type: ignore[attr-defined]
        "after-call.s3.GetObject", lambda http_response, **_: statuses.append(http_response.status_code)
    )
    assert ports.catalog.read_snapshot() is None
    ports.catalog.write_snapshot(b'{"packages": []}' * 1000)
    assert ports.catalog.read_snapshot() == b'{"packages": []}' * 1000
    assert ports.catalog.read_snapshot() == b'{"packages": []}' * 1000
    ports.catalog.write_snapshot(b'{"packages": [1]}')
    assert ports.catalog.read_snapshot() == b'{"packages": [1]}'
    assert statuses == [404, 200, 304, 200], "the second read of an unchanged snapshot was a 304"
