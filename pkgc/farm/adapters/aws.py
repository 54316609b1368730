"""AWS adapters of the farm's ports: DynamoDB for builds and the catalog, SQS for jobs, S3 for blobs, SNS for events.

These are the only farm modules that import boto3. Every call goes through `_aws_call`, which turns the vendor's
errors (ClientError, connection errors, throttling after botocore's own retries) into the core's `FarmUnavailable`
with a one-line reason, so nothing above the adapter boundary knows about botocore. Expected outcomes of a
conditional write (ConditionalCheckFailedException, S3's 412 on `If-None-Match`, SQS's invalid receipt handle on
an ack) are answers, not errors, and are handled where they happen.

Choices worth knowing (the contract suite in tests/contract holds them to the in-memory fakes' semantics):
- Builds: one item per build key, written only by conditional writes. `create_if_absent` asks for the current item
  on a lost race (`ReturnValuesOnConditionCheckFailure=ALL_OLD`), so a loser gets it in the same round trip. Lease
  writes are fenced by a condition on status + token + owner. Numbers travel as exact decimal strings (the
  low-level client's form of Decimal: `repr(float)` round-trips), the spec as one JSON string (nested maps cost
  more to write and to read, and nothing queries inside a spec), waiters as a string set (`ADD` is atomic).
  Reads are strongly consistent: a lease decision must see the last write.
- Jobs: a standard queue per platform and its dead-letter queue (redrive `maxReceiveCount`); SQS counts receives
  and moves a message to the DLQ by itself. `depth()` is visible + in flight (not delayed): the work that is
  waiting or being built now, which is what one-build-per-instance autoscaling wants to match; delayed messages
  are re-checks (a deferred job, the requeue safety net), not work.
- Blobs: content-addressed `put_content` is one `PutObject` with `If-None-Match: *` (moto 5.2.1 answers 412 on an
  existing key, as S3 does), so a blob is written at most once and never changes; it carries
  `Cache-Control: public, max-age=31536000, immutable` and its SHA-256 for S3 to verify. URLs go through the CDN
  when one is configured, else a presigned GET that expires (SigV4, at most 7 days).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pkgc.core.errors import FarmUnavailable, UsageError
from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.aws_tokens import DynamoTokenStore
from pkgc.farm.aws_settings import DEFAULT_PRESIGN_SECONDS, MAX_PRESIGN_SECONDS, AwsSettings
from pkgc.farm.ports import BlobKind, BuildRecord, FarmPorts, Job, Lease, content_blob_name

log = logging.getLogger(__name__)

T = TypeVar("T")

BY_NAME_INDEX = "by-name"
CATALOG_SNAPSHOT = "catalog/snapshot.json"
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"
# Named objects (the catalog snapshot) change: a CDN or client must revalidate them.
MUTABLE_CACHE_CONTROL = "no-cache"
SQS_MAX_WAIT = 20  # ReceiveMessage's WaitTimeSeconds limit
SQS_MAX_DELAY = 900  # SendMessage's DelaySeconds limit
SQS_MAX_VISIBILITY = 43_200  # 12 hours
BATCH_GET_LIMIT = 100
MAX_SPEC_BYTES = 300_000  # a DynamoDB item holds 400 KB in all; a spec near that is not a real build's
MAX_PUT_OBJECT_BYTES = 5 * 1024**3  # one PutObject; artifacts are far smaller
_BLOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_THROTTLING = {
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestThrottled",
}
# Lost races and stale receipts: expected answers, never turned into FarmUnavailable by the callers that allow them.
_CONDITION_FAILED = "ConditionalCheckFailedException"
_STALE_RECEIPT = {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"}


# --------------------------------------------------------------------------------------------------------------
# Errors at the boundary


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unavailable(what: str, exc: Exception) -> FarmUnavailable:
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        reason = f"{code}: {message}" if message else code
        hint = "the farm is throttled; try again shortly" if code in _THROTTLING else None
    else:
        reason, hint = f"{type(exc).__name__}: {exc}", None
    return FarmUnavailable(_one_line(f"{what} failed: {reason}"), hint=hint)


@contextmanager
def _aws_call(what: str, *, allow: frozenset[str] = frozenset()) -> Iterator[None]:
    """Turn vendor errors into FarmUnavailable naming the call; ClientErrors whose code is in `allow` pass through."""
    try:
        yield
    except ClientError as exc:
        if _error_code(exc) in allow:
            raise
        raise _unavailable(what, exc) from exc
    except BotoCoreError as exc:  # EndpointConnectionError, ReadTimeoutError, NoCredentialsError, ...
        raise _unavailable(what, exc) from exc


# --------------------------------------------------------------------------------------------------------------
# Settings and composition


def _client_config(service: str) -> Config:
    """Bounded timeouts and botocore's standard retries (throttling backs off before it becomes FarmUnavailable).

    The read timeout exceeds SQS's 20 s long poll; the pool is sized for a Lambda or worker serving many threads.
    """
    options: dict[str, Any] = {
        "connect_timeout": 5,
        "read_timeout": 30,
        "retries": {"mode": "standard", "max_attempts": 4},
        "max_pool_connections": 64,
    }
    if service == "s3":
        # SigV4 presigning (up to 7 days; required in newer regions); path-style for custom endpoints (moto).
        options["signature_version"] = "s3v4"
        options["s3"] = {"addressing_style": "path"}
    return Config(**options)


class AwsClients:
    """One boto3 client per service, made once (per Lambda container, per worker process) and shared by threads."""

    def __init__(self, settings: AwsSettings) -> None:
        session = boto3.session.Session(region_name=settings.region)
        self.region = session.region_name

        def make(service: str) -> Any:
            with _aws_call(f"creating the {service} client"):
                return session.client(
                    service, endpoint_url=settings.endpoint_url, config=_client_config(service)
                )

        self.dynamodb = make("dynamodb")
        self.sqs = make("sqs")
        self.s3 = make("s3")
        self.sns = make("sns")


def aws_ports(settings: AwsSettings, clients: AwsClients | None = None) -> FarmPorts:
    """Every farm port on AWS (the composition root calls this when PKGC_FARM_BACKEND=aws)."""
    clients = clients or AwsClients(settings)
    blobs = S3BlobStore(clients.s3, settings.bucket, cdn_url=settings.cdn_url, presign_seconds=settings.presign_seconds)
    return FarmPorts(
        catalog=DynamoCatalogStore(clients.dynamodb, settings.catalog_table, blobs),
        builds=DynamoBuildStore(clients.dynamodb, settings.builds_table),
        queues=SqsQueueRouter(clients.sqs, settings.queues),
        blobs=blobs,
        notifier=SnsNotifier(clients.sns, settings.topic_arn),
        tokens=DynamoTokenStore(clients.dynamodb, settings.tokens_table) if settings.tokens_table else None,
    )


# --------------------------------------------------------------------------------------------------------------
# DynamoDB: builds


def _num(value: float | int) -> dict[str, str]:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"DynamoDB cannot store {value!r}")
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _str(value: str) -> dict[str, str]:
    return {"S": value}


def _item_from_record(record: BuildRecord) -> dict[str, Any]:
    spec = json.dumps(record.spec, sort_keys=True, separators=(",", ":"))
    if len(spec) > MAX_SPEC_BYTES:
        raise UsageError(f"the build spec of {record.name} {record.version} is too large ({len(spec)} bytes)")
    item: dict[str, Any] = {
        "key": _str(record.key),
        "name": _str(record.name),
        "version": _str(record.version),
        "options": {"M": {k: _str(v) for k, v in record.options.items()}},
        "spec": _str(spec),
        "status": _str(record.status.value),
        "dependencies": {"L": [_str(d) for d in record.dependencies]},
        "runtime_dependencies": {"L": [_str(d) for d in record.runtime_dependencies]},
        "lease_token": _num(record.lease_token),
        "lease_expires": _num(float(record.lease_expires)),
        "attempts": _num(record.attempts),
        "last_line": _str(record.last_line),
        "created_at": _num(float(record.created_at)),
        "updated_at": _num(float(record.updated_at)),
        "enqueued_at": _num(float(record.enqueued_at)),
        "platform": _str(record.platform),
    }
    for name in ("artifact", "sha256", "log", "error", "lease_owner"):
        value = getattr(record, name)
        if value is not None:
            item[name] = _str(value)
    if record.size is not None:
        item["size"] = _num(record.size)
    if record.waiters:
        item["waiters"] = {"SS": sorted(set(record.waiters))}
    return item


def _record_from_item(item: Mapping[str, Any]) -> BuildRecord:
    def s(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else str(value["S"])

    def n(name: str) -> float:
        value = item.get(name)
        return 0.0 if value is None else float(value["N"])

    def i(name: str) -> int:
        value = item.get(name)
        return 0 if value is None else int(value["N"])

    def strings(name: str) -> tuple[str, ...]:
        value = item.get(name)
        return () if value is None else tuple(str(entry["S"]) for entry in value["L"])

    return BuildRecord(
        key=str(item["key"]["S"]),
        name=s("name") or "",
        version=s("version") or "",
        options={k: str(v["S"]) for k, v in item.get("options", {"M": {}})["M"].items()},
        spec=json.loads(s("spec") or "{}"),
        status=BuildStatus(s("status") or BuildStatus.QUEUED.value),
        dependencies=strings("dependencies"),
        runtime_dependencies=strings("runtime_dependencies"),
        artifact=s("artifact"),
        sha256=s("sha256"),
        size=None if "size" not in item else i("size"),
        log=s("log"),
        error=s("error"),
        lease_owner=s("lease_owner"),
        lease_token=i("lease_token"),
        lease_expires=n("lease_expires"),
        attempts=i("attempts"),
        last_line=s("last_line") or "",
        created_at=n("created_at"),
        updated_at=n("updated_at"),
        enqueued_at=n("enqueued_at"),
        platform=s("platform") or "",
        waiters=tuple(sorted(item["waiters"]["SS"])) if "waiters" in item else (),
    )


class _Update:
    """Builds one UpdateExpression with placeholders for every name and value (no reserved-word surprises)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.adds: list[str] = []

    def name(self, attribute: str) -> str:
        placeholder = f"#{attribute}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, label: str, value: Any) -> str:
        placeholder = f":{label}"
        self.values[placeholder] = value
        return placeholder

    def set(self, attribute: str, value: Any) -> _Update:
        self.sets.append(f"{self.name(attribute)} = {self.value(attribute, value)}")
        return self

    def set_or_remove(self, attribute: str, value: str | int | None) -> _Update:
        if value is None:
            self.removes.append(self.name(attribute))
        else:
            self.set(attribute, _num(value) if isinstance(value, int) else _str(value))
        return self

    def increment(self, attribute: str, by: int) -> _Update:
        ref = self.name(attribute)
        self.sets.append(f"{ref} = {ref} + {self.value(attribute + '_by', _num(by))}")
        return self

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        if self.adds:
            parts.append("ADD " + ", ".join(self.adds))
        return " ".join(parts)


class DynamoBuildStore:
    """Builds in one DynamoDB table (partition key `key`, GSI `by-name` on name + created_at, projecting ALL)."""

    def __init__(self, client: Any, table: str, *, max_batch_retries: int = 8) -> None:
        self._client = client
        self._table = table
        self._max_batch_retries = max_batch_retries

    def _what(self, operation: str) -> str:
        return f"DynamoDB {operation} on table {self._table}"

    def _conditional_update(self, key: str, update: _Update, condition: str, operation: str) -> dict[str, Any] | None:
        """Apply `update` if `condition` holds; the item as stored after the write, or None if the condition failed."""
        names = {"#key": "key", **update.names}
        try:
            with _aws_call(self._what(operation), allow=frozenset({_CONDITION_FAILED})):
                answer = self._client.update_item(
                    TableName=self._table,
                    Key={"key": _str(key)},
                    UpdateExpression=update.expression(),
                    ConditionExpression=f"attribute_exists(#key) AND ({condition})" if condition else "attribute_exists(#key)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=update.values,
                    ReturnValues="ALL_NEW",
                )
        except ClientError:
            return None
        return dict(answer["Attributes"])

    def create_if_absent(self, record: BuildRecord) -> tuple[bool, BuildRecord]:
        stored = replace(record, lease_owner=None, lease_token=0, lease_expires=0.0, attempts=0, last_line="")
        try:
            with _aws_call(self._what("PutItem"), allow=frozenset({_CONDITION_FAILED})):
                self._client.put_item(
                    TableName=self._table,
                    Item=_item_from_record(stored),
                    ConditionExpression="attribute_not_exists(#key)",
                    ExpressionAttributeNames={"#key": "key"},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except ClientError as exc:
            current = exc.response.get("Item")
            if current:
                return False, _record_from_item(current)
            # ALL_OLD came back empty (the item vanished in between, or an emulator without the feature): read it.
            existing = self.get(record.key)
            if existing is None:
                raise _unavailable(self._what("PutItem"), exc) from exc
            return False, existing
        return True, stored

    def get(self, key: str) -> BuildRecord | None:
        with _aws_call(self._what("GetItem")):
            answer = self._client.get_item(TableName=self._table, Key={"key": _str(key)}, ConsistentRead=True)
        item = answer.get("Item")
        return None if not item else _record_from_item(item)

    def get_many(self, keys: list[str]) -> dict[str, BuildRecord]:
        """BatchGetItem in chunks of 100 distinct keys, retrying unprocessed keys (DynamoDB returns them when the
        table throttles or an answer passes 16 MB) with a backoff that grows while no key gets through."""
        found: dict[str, BuildRecord] = {}
        unique = list(dict.fromkeys(keys))  # BatchGetItem refuses a request that names a key twice
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self._table: {"Keys": [{"key": _str(k)} for k in unique[start : start + BATCH_GET_LIMIT]], "ConsistentRead": True}
            }
            stalled = 0  # calls in a row that processed no key: the backoff grows only while nothing moves
            while request:
                asked = len(request[self._table]["Keys"])
                with _aws_call(self._what("BatchGetItem")):
                    answer = self._client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    record = _record_from_item(item)
                    found[record.key] = record
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                stalled = stalled + 1 if len(request[self._table]["Keys"]) >= asked else 0
                if stalled > self._max_batch_retries:
                    raise FarmUnavailable(f"{self._what('BatchGetItem')} left keys unprocessed after {stalled} tries")
                time.sleep(min(1.0, 0.05 * 2**stalled))
        return found

    def acquire_lease(self, key: str, owner: str, now: float, ttl: float) -> Lease | None:
        update = (
            _Update()
            .set("status", _str(BuildStatus.BUILDING.value))
            .set("lease_owner", _str(owner))
            .set("lease_expires", _num(float(now + ttl)))
            .set("updated_at", _num(float(now)))
            .increment("lease_token", 1)
            .increment("attempts", 1)
        )
        update.values[":queued"] = _str(BuildStatus.QUEUED.value)
        update.values[":building"] = _str(BuildStatus.BUILDING.value)
        update.values[":now"] = _num(float(now))
        item = self._conditional_update(
            key,
            update,
            "#status = :queued OR (#status = :building AND #lease_expires < :now)",
            "UpdateItem (acquire lease)",
        )
        if item is None:
            return None
        record = _record_from_item(item)
        return Lease(key=key, owner=owner, token=record.lease_token, attempts=record.attempts)

    def _fenced(self, lease: Lease, update: _Update, operation: str) -> bool:
        """Write only while `lease` is the current one: building, same token, same owner."""
        update.names.update({"#status": "status", "#lease_token": "lease_token", "#lease_owner": "lease_owner"})
        update.values.update(
            {
                ":held_status": _str(BuildStatus.BUILDING.value),
                ":held_token": _num(lease.token),
                ":held_owner": _str(lease.owner),
            }
        )
        condition = "#status = :held_status AND #lease_token = :held_token AND #lease_owner = :held_owner"
        return self._conditional_update(lease.key, update, condition, operation) is not None

    def renew_lease(self, lease: Lease, now: float, ttl: float, last_line: str | None = None) -> bool:
        update = _Update().set("lease_expires", _num(float(now + ttl))).set("updated_at", _num(float(now)))
        if last_line is not None:
            update.set("last_line", _str(last_line[:500]))
        return self._fenced(lease, update, "UpdateItem (renew lease)")

    def release_lease(self, lease: Lease, now: float) -> bool:
        update = (
            _Update()
            .set("lease_expires", _num(0.0))
            .set("updated_at", _num(float(now)))
            .increment("attempts", -1)
            .set_or_remove("lease_owner", None)
        )
        update.sets.append(f"{update.name('status')} = {update.value('released', _str(BuildStatus.QUEUED.value))}")
        return self._fenced(lease, update, "UpdateItem (release lease)")

    def finish(
        self,
        lease: Lease,
        now: float,
        *,
        status: BuildStatus,
        artifact: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        log: str | None = None,
        error: str | None = None,
    ) -> bool:
        if not status.finished:
            raise ValueError("finish() takes ready or failed")
        update = _Update().set("lease_expires", _num(0.0)).set("updated_at", _num(float(now)))
        update.sets.append(f"{update.name('status')} = {update.value('finished', _str(status.value))}")
        for attribute, value in (
            ("artifact", artifact),
            ("sha256", sha256),
            ("size", size),
            ("log", log),
            ("error", error),
            ("lease_owner", None),
        ):
            update.set_or_remove(attribute, value)
        return self._fenced(lease, update, "UpdateItem (finish)")

    def mark_enqueued(self, key: str, now: float) -> None:
        self._conditional_update(key, _Update().set("enqueued_at", _num(float(now))), "", "UpdateItem (enqueued)")

    def add_waiter(self, dependency_key: str, waiter_key: str) -> BuildRecord | None:
        update = _Update()
        update.adds.append(f"{update.name('waiters')} {update.value('waiter', {'SS': [waiter_key]})}")
        item = self._conditional_update(dependency_key, update, "", "UpdateItem (add waiter)")
        return None if item is None else _record_from_item(item)

    def requeue_failed(self, key: str, now: float) -> bool:
        update = (
            _Update()
            .set("last_line", _str(""))
            .set("attempts", _num(0))
            .set("lease_expires", _num(0.0))
            .set("updated_at", _num(float(now)))
            .set("enqueued_at", _num(float(now)))
            .set_or_remove("error", None)
            .set_or_remove("lease_owner", None)
        )
        update.sets.append(f"{update.name('status')} = {update.value('requeued', _str(BuildStatus.QUEUED.value))}")
        update.values[":failed"] = _str(BuildStatus.FAILED.value)
        return self._conditional_update(key, update, "#status = :failed", "UpdateItem (requeue failed)") is not None

    def builds_of(self, name: str, limit: int = 100) -> list[BuildRecord]:
        """Newest first through the `by-name` GSI (sort key created_at), paging until `limit` records."""
        found: list[BuildRecord] = []
        start: dict[str, Any] | None = None
        while len(found) < limit:
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": BY_NAME_INDEX,
                "KeyConditionExpression": "#name = :name",
                "ExpressionAttributeNames": {"#name": "name"},
                "ExpressionAttributeValues": {":name": _str(name)},
                "ScanIndexForward": False,
                "Limit": limit - len(found),
            }
            if start:
                request["ExclusiveStartKey"] = start
            with _aws_call(self._what(f"Query on index {BY_NAME_INDEX}")):
                answer = self._client.query(**request)
            found.extend(_record_from_item(item) for item in answer.get("Items", []))
            start = answer.get("LastEvaluatedKey")
            if not start:
                break
        return found[:limit]


# --------------------------------------------------------------------------------------------------------------
# DynamoDB + S3: catalog


class DynamoCatalogStore:
    """Recipes in a DynamoDB table keyed by package name; the snapshot is one S3 object served like any blob."""

    def __init__(self, client: Any, table: str, blobs: S3BlobStore) -> None:
        self._client = client
        self._table = table
        self._blobs = blobs
        # The last snapshot read, with its S3 ETag: the service rereads the snapshot every few seconds, and with all
        # of Debian it is about 6 MB, so a reread asks S3 for it only if it changed (a 304 costs no transfer).
        self._snapshot: tuple[str, bytes] | None = None
        self._snapshot_lock = threading.Lock()

    def put_recipe(self, name: str, text: str, summary: str, latest: str) -> None:
        with _aws_call(f"DynamoDB PutItem on table {self._table}"):
            self._client.put_item(
                TableName=self._table,
                Item={"name": _str(name), "recipe": _str(text), "summary": _str(summary), "latest": _str(latest)},
            )

    def get_recipe_text(self, name: str) -> str | None:
        with _aws_call(f"DynamoDB GetItem on table {self._table}"):
            answer = self._client.get_item(
                TableName=self._table,
                Key={"name": _str(name)},
                ProjectionExpression="#recipe",
                ExpressionAttributeNames={"#recipe": "recipe"},
            )
        item = answer.get("Item")
        return None if not item or "recipe" not in item else str(item["recipe"]["S"])

    def list_packages(self) -> list[tuple[str, str, str]]:
        """A paged Scan of names, summaries and latest versions (not the recipe texts): for writing the snapshot."""
        rows: list[tuple[str, str, str]] = []
        start: dict[str, Any] | None = None
        while True:
            request: dict[str, Any] = {
                "TableName": self._table,
                "ProjectionExpression": "#name, #summary, #latest",
                "ExpressionAttributeNames": {"#name": "name", "#summary": "summary", "#latest": "latest"},
            }
            if start:
                request["ExclusiveStartKey"] = start
            with _aws_call(f"DynamoDB Scan on table {self._table}"):
                answer = self._client.scan(**request)
            for item in answer.get("Items", []):
                rows.append((str(item["name"]["S"]), str(item["summary"]["S"]), str(item["latest"]["S"])))
            start = answer.get("LastEvaluatedKey")
            if not start:
                return sorted(rows)

    def write_snapshot(self, data: bytes) -> None:
        self._blobs.put_named(CATALOG_SNAPSHOT, data)

    def read_snapshot(self) -> bytes | None:
        with self._snapshot_lock:
            known = self._snapshot
        found = self._blobs.get_if_changed(CATALOG_SNAPSHOT, known)
        with self._snapshot_lock:
            self._snapshot = found
        return found[1] if found is not None else None


# --------------------------------------------------------------------------------------------------------------
# SQS: jobs


def _seconds(value: float, upper: int) -> int:
    """SQS takes whole seconds: round up (a visibility never ends early), clamp to the API's range."""
    return max(0, min(upper, math.ceil(value)))


class SqsJobQueue:
    """One standard SQS queue; its dead-letter queue is found through the queue's redrive policy."""

    def __init__(self, client: Any, url: str) -> None:
        self._client = client
        self.url = url
        self._dead_letter_url: str | None = None

    def _what(self, operation: str) -> str:
        return f"SQS {operation} on {self.url.rsplit('/', 1)[-1]}"

    def send(self, body: str, delay: float = 0.0) -> None:
        """Delays beyond SQS's 15 minutes are cut to 15: the job is re-checked earlier, never lost."""
        with _aws_call(self._what("SendMessage")):
            self._client.send_message(QueueUrl=self.url, MessageBody=body, DelaySeconds=_seconds(delay, SQS_MAX_DELAY))

    def receive(self, visibility_timeout: float, wait: float) -> Job | None:
        """Long polls of at most 20 s each until a message arrives or `wait` has passed."""
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            remaining = deadline - time.monotonic()
            with _aws_call(self._what("ReceiveMessage")):
                answer = self._client.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=_seconds(remaining, SQS_MAX_WAIT) if remaining > 0 else 0,
                    VisibilityTimeout=_seconds(visibility_timeout, SQS_MAX_VISIBILITY),
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            messages = answer.get("Messages") or []
            if messages:
                message = messages[0]
                return Job(
                    body=str(message["Body"]),
                    receipt=str(message["ReceiptHandle"]),
                    receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                    extra={"message_id": str(message.get("MessageId", ""))},
                )
            if time.monotonic() >= deadline:
                return None

    def extend(self, job: Job, visibility_timeout: float) -> None:
        """Raises FarmUnavailable when SQS refuses (a stale receipt included): the heartbeat must hear of it."""
        with _aws_call(self._what("ChangeMessageVisibility")):
            self._client.change_message_visibility(
                QueueUrl=self.url,
                ReceiptHandle=job.receipt,
                VisibilityTimeout=_seconds(visibility_timeout, SQS_MAX_VISIBILITY),
            )

    def ack(self, job: Job) -> None:
        """Delete the message; a receipt SQS no longer knows means it is already gone, which is what ack wants."""
        try:
            with _aws_call(self._what("DeleteMessage"), allow=frozenset(_STALE_RECEIPT)):
                self._client.delete_message(QueueUrl=self.url, ReceiptHandle=job.receipt)
        except ClientError as exc:
            log.info("ack of a message SQS no longer knows (%s): already deleted", _error_code(exc))

    def retry_later(self, job: Job, delay: float) -> None:
        """The message comes back after `delay` (a receive more towards the dead-letter queue, as on every fake)."""
        self.extend(job, delay)

    def _attributes(self, url: str, names: Sequence[str]) -> dict[str, str]:
        with _aws_call(self._what("GetQueueAttributes")):
            answer = self._client.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
        return {str(k): str(v) for k, v in answer.get("Attributes", {}).items()}

    def depth(self) -> int:
        """Messages waiting plus messages in flight (approximate on AWS, about a minute behind)."""
        attributes = self._attributes(
            self.url, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )
        return int(attributes.get("ApproximateNumberOfMessages", "0")) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", "0")
        )

    def dead_letter_url(self) -> str | None:
        if self._dead_letter_url is None:
            policy = self._attributes(self.url, ["RedrivePolicy"]).get("RedrivePolicy")
            if not policy:
                return None
            try:
                name = str(json.loads(policy)["deadLetterTargetArn"]).rsplit(":", 1)[1]
            except (ValueError, KeyError, IndexError, TypeError):
                raise FarmUnavailable(f"{self._what('GetQueueAttributes')}: unreadable RedrivePolicy") from None
            # SQS requires the dead-letter queue in the source queue's account and region, so its URL is the
            # source's with the last segment replaced: no GetQueueUrl call, and no permission for one.
            self._dead_letter_url = f"{self.url.rsplit('/', 1)[0]}/{name}"
        return self._dead_letter_url

    def dead_letter_count(self) -> int:
        url = self.dead_letter_url()
        if url is None:
            return 0
        attributes = self._attributes(url, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return int(attributes.get("ApproximateNumberOfMessages", "0")) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", "0")
        )


    def receive_dead_letter(self, visibility_timeout: float) -> Job | None:
        """One message of the DLQ, no long poll (an empty DLQ is the usual case and must cost one request)."""
        url = self.dead_letter_url()
        if url is None:
            return None
        return SqsJobQueue(self._client, url).receive(visibility_timeout, 0)

    def delete_dead_letter(self, job: Job) -> None:
        url = self.dead_letter_url()
        if url is not None:
            SqsJobQueue(self._client, url).ack(job)


class SqsQueueRouter:
    """The configured platform → queue URL map; the queues themselves are made by CloudFormation, never here."""

    def __init__(self, client: Any, queues: Mapping[str, str]) -> None:
        self._queues = {platform: SqsJobQueue(client, url) for platform, url in queues.items()}

    def for_platform(self, platform: str) -> SqsJobQueue:
        queue = self._queues.get(platform)
        if queue is None:
            served = ", ".join(sorted(self._queues)) or "none"
            raise UsageError(f"this farm has no build queue for platform {platform[:100]!r}; it builds for: {served}")
        return queue

    def platforms(self) -> list[str]:
        return sorted(self._queues)


# --------------------------------------------------------------------------------------------------------------
# S3: blobs


def _check_blob_name(name: str) -> str:
    if len(name) > 1024 or not _BLOB_NAME.fullmatch(name) or ".." in name.split("/"):
        raise ValueError(f"blob name {name[:100]!r} is not a safe object key")
    return name


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_CONTENT_TYPES = {"artifacts": "application/zstd", "logs": "text/plain; charset=utf-8"}


class S3BlobStore:
    """Blobs as S3 objects in one bucket; URLs through the CDN (CloudFront) when configured, else presigned GETs."""

    def __init__(
        self, client: Any, bucket: str, *, cdn_url: str | None = None, presign_seconds: int = DEFAULT_PRESIGN_SECONDS
    ) -> None:
        if not 1 <= presign_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"presign_seconds must be 1..{MAX_PRESIGN_SECONDS}")
        self._client = client
        self._bucket = bucket
        self._cdn_url = cdn_url.rstrip("/") if cdn_url else None
        self._presign_seconds = presign_seconds

    def _what(self, operation: str, name: str) -> str:
        return f"S3 {operation} of {self._bucket}/{name}"

    def put_content(self, kind: BlobKind, path: Path) -> str:
        """One conditional PUT (`If-None-Match: *`): S3 stores it if absent and answers 412 if it exists."""
        size = path.stat().st_size
        if size > MAX_PUT_OBJECT_BYTES:
            raise UsageError(f"{path.name} is {size} bytes: over the 5 GiB a single upload takes")
        digest = _sha256_of(path)
        name = content_blob_name(kind, digest)
        with path.open("rb") as body:
            try:
                with _aws_call(self._what("PutObject", name), allow=frozenset({"PreconditionFailed"})):
                    self._client.put_object(
                        Bucket=self._bucket,
                        Key=name,
                        Body=body,
                        IfNoneMatch="*",
                        CacheControl=IMMUTABLE_CACHE_CONTROL,
                        ContentType=_CONTENT_TYPES[kind],
                        ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
                    )
            except ClientError:
                pass  # 412: a blob of this content is there already, and content-addressed blobs never change
        return name

    def put_named(self, name: str, data: bytes) -> None:
        _check_blob_name(name)
        with _aws_call(self._what("PutObject", name)):
            self._client.put_object(
                Bucket=self._bucket,
                Key=name,
                Body=data,
                CacheControl=MUTABLE_CACHE_CONTROL,
                ContentType="application/json" if name.endswith(".json") else "application/octet-stream",
            )

    def get_bytes(self, name: str) -> bytes | None:
        _check_blob_name(name)
        try:
            with _aws_call(self._what("GetObject", name), allow=frozenset({"NoSuchKey", "404"})):
                answer = self._client.get_object(Bucket=self._bucket, Key=name)
                return bytes(answer["Body"].read())
        except ClientError:
            return None

    def get_if_changed(self, name: str, known: tuple[str, bytes] | None) -> tuple[str, bytes] | None:
        """(ETag, bytes) of a mutable object, or `known` itself when S3 says the object still has that ETag (a
        conditional GET: 304, nothing transferred); None when there is no such object."""
        _check_blob_name(name)
        condition = {"IfNoneMatch": known[0]} if known is not None else {}
        try:
            with _aws_call(self._what("GetObject", name), allow=frozenset({"NoSuchKey", "404", "304", "NotModified"})):
                answer = self._client.get_object(Bucket=self._bucket, Key=name, **condition)
                return str(answer.get("ETag", "")), bytes(answer["Body"].read())
        except ClientError as exc:
            if _error_code(exc) in ("304", "NotModified"):
                return known
            return None

    def download_to(self, name: str, path: Path) -> bool:
        """Streams to a temporary file beside `path`, then renames: a reader never sees half a blob."""
        _check_blob_name(name)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with _aws_call(self._what("GetObject", name), allow=frozenset({"NoSuchKey", "404"})):
                answer = self._client.get_object(Bucket=self._bucket, Key=name)
                with temporary.open("wb") as handle:
                    for chunk in answer["Body"].iter_chunks(1 << 20):
                        handle.write(chunk)
            os.replace(temporary, path)
            return True
        except ClientError:
            return False
        finally:
            temporary.unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        _check_blob_name(name)
        try:
            with _aws_call(self._what("HeadObject", name), allow=frozenset({"404", "NoSuchKey", "NotFound"})):
                self._client.head_object(Bucket=self._bucket, Key=name)
        except ClientError:
            return False
        return True

    def url_for(self, name: str) -> str:
        """`{cdn}/{name}` when a CDN is configured; else a presigned GET valid for `presign_seconds`.

        A presigned URL made with temporary (role) credentials stops working when they expire, whichever is first.
        """
        _check_blob_name(name)
        if self._cdn_url:
            return f"{self._cdn_url}/{quote(name)}"
        with _aws_call(self._what("presigning GET", name)):
            return str(
                self._client.generate_presigned_url(
                    "get_object", Params={"Bucket": self._bucket, "Key": name}, ExpiresIn=self._presign_seconds
                )
            )

    def url_lifetime(self) -> float | None:
        """None through the CDN (its URLs do not expire); else the presigned URLs' `presign_seconds`."""
        return None if self._cdn_url else float(self._presign_seconds)


# --------------------------------------------------------------------------------------------------------------
# SNS: notifications


class SnsNotifier:
    """Publishes one JSON message per finished build; without a topic it does nothing.

    Best effort by design: the build is already finished (the fenced write committed) when this runs, so a
    notification that cannot be sent is logged, not raised into the worker's publish step.
    """

    def __init__(self, client: Any, topic_arn: str | None) -> None:
        self._client = client
        self._topic_arn = topic_arn
        self.failures = 0

    def build_finished(self, record: BuildRecord) -> None:
        if not self._topic_arn:
            return
        message = {
            "key": record.key,
            "name": record.name,
            "version": record.version,
            "platform": record.platform,
            "status": record.status.value,
            "artifact": record.artifact,
            "sha256": record.sha256,
            "error": record.error,
        }
        try:
            with _aws_call(f"SNS Publish to {self._topic_arn}"):
                self._client.publish(
                    TopicArn=self._topic_arn,
                    Message=json.dumps(message, sort_keys=True),
                    MessageAttributes={"status": {"DataType": "String", "StringValue": record.status.value}},
                )
        except FarmUnavailable as exc:
            self.failures += 1
            log.warning("build %s finished, but its notification was not sent: %s", record.key, exc)


# --------------------------------------------------------------------------------------------------------------
# Resources (tests and local tooling; CloudFormation makes them in a deployment)


def _queue_name(prefix: str, platform: str) -> str:
    """SQS names allow [A-Za-z0-9_-], 80 characters: a readable part plus a digest keeps distinct platforms apart."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "-", platform)[:40]
    return f"{prefix}-{readable}-{hashlib.sha256(platform.encode()).hexdigest()[:8]}"[:75]


def create_resources(
    settings: AwsSettings,
    platforms: Sequence[str] = (),
    *,
    prefix: str = "pkgc",
    max_receive_count: int = 5,
    with_topic: bool = True,
    clients: AwsClients | None = None,
) -> AwsSettings:
    """Make what the infra templates make (tables with the GSI, bucket, a queue + DLQ per platform, a topic).

    For tests against moto: returns `settings` with the queue URLs and the topic ARN filled in. The key schemas
    are the ones the farm relies on: builds `key` (GSI `by-name`: name, created_at N, projecting ALL), catalog
    `name`, tokens `token_hash`.
    """
    clients = clients or AwsClients(settings)
    ddb, sqs, s3 = clients.dynamodb, clients.sqs, clients.s3

    def table(name: str, key: str, **extra: Any) -> None:
        definitions = [{"AttributeName": key, "AttributeType": "S"}, *extra.pop("definitions", [])]
        with _aws_call(f"DynamoDB CreateTable {name}"):
            ddb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=definitions,
                BillingMode="PAY_PER_REQUEST",
                **extra,
            )

    table(
        settings.builds_table,
        "key",
        definitions=[
            {"AttributeName": "name", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": BY_NAME_INDEX,
                "KeySchema": [
                    {"AttributeName": "name", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    table(settings.catalog_table, "name")
    if settings.tokens_table:
        table(settings.tokens_table, "token_hash")
    with _aws_call(f"S3 CreateBucket {settings.bucket}"):
        if clients.region in (None, "us-east-1"):
            s3.create_bucket(Bucket=settings.bucket)
        else:
            s3.create_bucket(
                Bucket=settings.bucket, CreateBucketConfiguration={"LocationConstraint": clients.region}
            )
    queues = dict(settings.queues)
    for platform in platforms:
        name = _queue_name(prefix, platform)
        with _aws_call(f"SQS CreateQueue {name}"):
            dead = sqs.create_queue(QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"})
            dead_arn = sqs.get_queue_attributes(QueueUrl=dead["QueueUrl"], AttributeNames=["QueueArn"])
            redrive = {
                "deadLetterTargetArn": dead_arn["Attributes"]["QueueArn"],
                "maxReceiveCount": str(max_receive_count),
            }
            queues[platform] = str(
                sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(redrive)})["QueueUrl"]
            )
    topic_arn = settings.topic_arn
    if with_topic and not topic_arn:
        with _aws_call(f"SNS CreateTopic {prefix}-builds"):
            topic_arn = str(clients.sns.create_topic(Name=f"{prefix}-builds")["TopicArn"])
    return replace(settings, queues=queues, topic_arn=topic_arn)
