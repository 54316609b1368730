"""The TokenStore contract, run against every adapter: in memory, SQLite (the farm database) and DynamoDB (boto3
against moto in server mode on loopback: one server for the session, a fresh table per test)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pkgc.farm.adapters.local import open_farm_database
from pkgc.farm.adapters.local_tokens import SqliteTokenStore
from pkgc.farm.adapters.memory_tokens import MemoryTokenStore
from pkgc.farm.ports import HOUR_SECONDS, TokenRecord, TokenStore, hour_window
from tests.moto_server import MotoServer

T0 = 1_700_000_000.0  # the start of an hourly window is T0 - T0 % 3600
WINDOW_START = T0 - T0 % HOUR_SECONDS


@pytest.fixture
def moto_endpoint(moto_server: MotoServer) -> str:
    """The session's one moto server (tests/moto_server.py); each test makes a fresh table on it."""
    return moto_server.endpoint


def dynamo_store(endpoint: str) -> TokenStore:
    boto3 = pytest.importorskip("boto3")
    from pkgc.farm.adapters.aws_tokens import DynamoTokenStore

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    table = f"tokens-{uuid.uuid4().hex[:12]}"  # a fresh table per test: no state carried between tests
    client.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "token_hash", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "token_hash", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return DynamoTokenStore(client, table)


STORES = ["memory", "sqlite", "dynamodb"]


@pytest.fixture(params=STORES)
def tokens(request: pytest.FixtureRequest, tmp_path: Path) -> TokenStore:
    if request.param == "memory":
        return MemoryTokenStore()
    if request.param == "sqlite":
        return SqliteTokenStore(open_farm_database(tmp_path / "farm.db"))
    endpoint: str = request.getfixturevalue("moto_endpoint")
    return dynamo_store(endpoint)


def token(name: str = "ci", *, hourly: int = 10, flying: int = 5, role: Any = "user") -> TokenRecord:
    return TokenRecord(
        token_hash=f"{name:0<64}"[:64],
        name=name,
        role=role,
        builds_per_hour=hourly,
        max_in_flight=flying,
        created_at=T0,
    )


def keys(prefix: str, count: int) -> tuple[str, ...]:
    """`count` distinct build keys, in sorted order (64 hex digits, as real keys are)."""
    return tuple(sorted(hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest() for i in range(count)))


def race(attempt: Callable[[int], bool], callers: int = 20) -> list[bool]:
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(callers)

    def run(index: int) -> None:
        barrier.wait()
        outcome = attempt(index)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_create_get_list_and_revoke(tokens: TokenStore) -> None:
    assert tokens.get("0" * 64) is None
    assert tokens.create(token("ci"))
    assert not tokens.create(token("ci")), "a hash is stored once"
    assert tokens.create(token("admin", role="admin"))
    stored = tokens.get(token("ci").token_hash)
    assert stored == token("ci"), "what was stored is read back"
    assert [t.name for t in tokens.list_tokens()] == ["admin", "ci"]
    assert {t.role for t in tokens.list_tokens()} == {"user", "admin"}

    assert tokens.revoke(stored.token_hash, T0 + 5)
    assert not tokens.revoke(stored.token_hash, T0 + 6), "revoked once; the first time stays"
    assert not tokens.revoke("f" * 64, T0), "an unknown token is not revoked"
    revoked = tokens.get(stored.token_hash)
    assert revoked is not None and revoked.revoked and revoked.revoked_at == T0 + 5
    assert tokens.get("f" * 64) is None, "revoking an unknown token does not create it"


def test_admit_counts_builds_per_hourly_window(tokens: TokenStore) -> None:
    record = token(hourly=5, flying=100)
    tokens.create(record)
    admitted, after = tokens.admit(record.token_hash, T0, keys("a", 3))
    assert admitted and after is not None
    assert after.started_in_window(hour_window(T0)) == 3 and after.builds_started == 3
    assert set(after.in_flight) == set(keys("a", 3))
    admitted, after = tokens.admit(record.token_hash, T0 + 1, keys("b", 3))
    assert not admitted and after is not None and after.window_count == 3, "3 + 3 is past 5 per hour: nothing"
    admitted, after = tokens.admit(record.token_hash, T0 + 2, keys("b", 2))
    assert admitted and after is not None and after.window_count == 5
    admitted, _ = tokens.admit(record.token_hash, T0 + 3, keys("c", 1))
    assert not admitted, "the window is full"
    next_window = WINDOW_START + HOUR_SECONDS
    admitted, after = tokens.admit(record.token_hash, next_window, keys("c", 4))
    assert admitted and after is not None, "a new hour starts the count afresh"
    assert after.window == hour_window(next_window) and after.window_count == 4 and after.builds_started == 9


def test_admit_bounds_builds_in_flight_and_forgetting_frees_them(tokens: TokenStore) -> None:
    record = token(hourly=100, flying=3)
    tokens.create(record)
    assert tokens.admit(record.token_hash, T0, keys("a", 2))[0]
    assert not tokens.admit(record.token_hash, T0, keys("b", 2))[0], "2 in flight + 2 is past 3"
    tokens.forget_in_flight(record.token_hash, keys("a", 2)[:1] + keys("z", 1))  # an unknown key is ignored
    stored = tokens.get(record.token_hash)
    assert stored is not None and stored.in_flight == keys("a", 2)[1:], "the rest stays in flight"
    admitted, after = tokens.admit(record.token_hash, T0, keys("b", 2))
    assert admitted and after is not None and len(after.in_flight) == 3
    tokens.forget_in_flight(record.token_hash, after.in_flight)
    emptied = tokens.get(record.token_hash)
    assert emptied is not None and emptied.in_flight == ()
    tokens.forget_in_flight("f" * 64, keys("a", 1))
    assert tokens.get("f" * 64) is None, "forgetting on an unknown token does not create it"


def test_revoked_and_unknown_tokens_are_never_admitted(tokens: TokenStore) -> None:
    record = token()
    tokens.create(record)
    assert tokens.admit("f" * 64, T0, keys("a", 1)) == (False, None)
    tokens.revoke(record.token_hash, T0)
    admitted, after = tokens.admit(record.token_hash, T0 + 1, keys("a", 1))
    assert not admitted and after is not None and after.revoked and after.builds_started == 0


def test_admit_is_atomic_under_concurrency(tokens: TokenStore) -> None:
    record = token(hourly=10, flying=100)
    tokens.create(record)
    outcomes = race(lambda i: tokens.admit(record.token_hash, T0, keys(f"{i:02d}", 1))[0])
    assert outcomes.count(True) == 10, "20 concurrent callers, 10 per hour: exactly 10 admitted"
    stored = tokens.get(record.token_hash)
    assert stored is not None and stored.window_count == 10 and len(stored.in_flight) == 10


def test_in_flight_quota_is_atomic_under_concurrency(tokens: TokenStore) -> None:
    record = token(hourly=1000, flying=7)
    tokens.create(record)
    outcomes = race(lambda i: tokens.admit(record.token_hash, T0, keys(f"{i:02d}", 1))[0])
    assert outcomes.count(True) == 7
    stored = tokens.get(record.token_hash)
    assert stored is not None and len(stored.in_flight) == 7 and stored.builds_started == 7
