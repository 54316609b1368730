"""The TokenStore port on DynamoDB: one item per token in the tokens table, partition key `token_hash` (S).

Item: name, role, builds_per_hour, max_in_flight, created_at, revoked_at (absent while the token is valid),
quota_window and window_count (the fixed hourly window and the builds started in it), in_flight (a string set of
the build keys it started and nobody has yet seen finished; DynamoDB drops an empty set, so absent means empty),
builds_started, last_used_at.

`admit` is a consistent read and one conditional UpdateItem. A condition cannot do arithmetic, so the limits it
compares with are computed from the read (`window_count <= builds_per_hour - n`, `size(in_flight) <= max_in_flight
- n`), and the condition also pins the quotas and the window to the values read: a concurrent change makes the
write fail, and the loop reads again. Every failed write means another writer changed the item, so the loop ends.
Vendor errors become FarmUnavailable here; boto3 is imported by the caller that makes the client, not here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pkgc.core.errors import FarmUnavailable
from pkgc.farm.ports import TokenRecord, hour_window

_MAX_ROUNDS = 100  # each lost round is another writer's win, so concurrency bounds the rounds; this bounds a bug


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _unavailable(exc: Exception) -> FarmUnavailable:
    return FarmUnavailable(f"the tokens table cannot be used: {_error_code(exc) or type(exc).__name__}: {exc}")


def _number(item: dict[str, Any], name: str, default: float = 0) -> Decimal:
    value = item.get(name)
    return Decimal(value["N"]) if value is not None else Decimal(default)


def _record(item: dict[str, Any]) -> TokenRecord:
    return TokenRecord(
        token_hash=item["token_hash"]["S"],
        name=item["name"]["S"],
        role="admin" if item.get("role", {}).get("S") == "admin" else "user",
        builds_per_hour=int(_number(item, "builds_per_hour")),
        max_in_flight=int(_number(item, "max_in_flight")),
        created_at=float(_number(item, "created_at")),
        revoked_at=float(_number(item, "revoked_at")) if "revoked_at" in item else None,
        window=int(_number(item, "quota_window")),
        window_count=int(_number(item, "window_count")),
        in_flight=tuple(sorted(item.get("in_flight", {}).get("SS", []))),
        builds_started=int(_number(item, "builds_started")),
        last_used_at=float(_number(item, "last_used_at")),
    )


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


class DynamoTokenStore:
    """Tokens in DynamoDB through a boto3 client (`client("dynamodb")`) made by the composition root."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table
        self._conditional_failed: type[Exception] = client.exceptions.ConditionalCheckFailedException

    def create(self, record: TokenRecord) -> bool:
        item: dict[str, Any] = {
            "token_hash": {"S": record.token_hash},
            "name": {"S": record.name},
            "role": {"S": record.role},
            "builds_per_hour": _n(record.builds_per_hour),
            "max_in_flight": _n(record.max_in_flight),
            "created_at": _n(record.created_at),
            "quota_window": _n(record.window),
            "window_count": _n(record.window_count),
            "builds_started": _n(record.builds_started),
            "last_used_at": _n(record.last_used_at),
        }
        if record.revoked_at is not None:
            item["revoked_at"] = _n(record.revoked_at)
        if record.in_flight:
            item["in_flight"] = {"SS": list(record.in_flight)}
        try:
            self._client.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(token_hash)"
            )
        except self._conditional_failed:
            return False
        except Exception as exc:  # botocore's ClientError and connection errors
            raise _unavailable(exc) from None
        return True

    def get(self, token_hash: str) -> TokenRecord | None:
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"token_hash": {"S": token_hash}}, ConsistentRead=True
            )
        except Exception as exc:
            raise _unavailable(exc) from None
        item = answer.get("Item")
        return None if item is None else _record(item)

    def list_tokens(self) -> list[TokenRecord]:
        found: list[TokenRecord] = []
        arguments: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
        try:
            while True:
                page = self._client.scan(**arguments)
                found.extend(_record(item) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:
            raise _unavailable(exc) from None
        return sorted(found, key=lambda r: (r.created_at, r.name))

    def revoke(self, token_hash: str, now: float) -> bool:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"token_hash": {"S": token_hash}},
                UpdateExpression="SET revoked_at = :now",
                ConditionExpression="attribute_exists(token_hash) AND attribute_not_exists(revoked_at)",
                ExpressionAttributeValues={":now": _n(now)},
            )
        except self._conditional_failed:
            return False
        except Exception as exc:
            raise _unavailable(exc) from None
        return True

    def admit(self, token_hash: str, now: float, keys: tuple[str, ...]) -> tuple[bool, TokenRecord | None]:
        window, count = hour_window(now), len(keys)
        for _ in range(_MAX_ROUNDS):
            record = self.get(token_hash)
            if record is None:
                return False, None
            started = record.started_in_window(window)
            if (
                record.revoked
                or started + count > record.builds_per_hour
                or len(record.in_flight) + count > record.max_in_flight
            ):
                return False, record
            if not keys:
                return True, record
            values: dict[str, Any] = {
                ":window": _n(window),
                ":count": _n(count),
                ":now": _n(now),
                ":keys": {"SS": list(keys)},
                ":bph": _n(record.builds_per_hour),
                ":mif": _n(record.max_in_flight),
                ":flying": _n(record.max_in_flight - count),
            }
            condition = (
                "attribute_exists(token_hash) AND attribute_not_exists(revoked_at)"
                " AND builds_per_hour = :bph AND max_in_flight = :mif"
                " AND (attribute_not_exists(in_flight) OR size(in_flight) <= :flying)"
            )
            if record.window == window:
                update = "SET last_used_at = :now ADD window_count :count, builds_started :count, in_flight :keys"
                condition += " AND quota_window = :window AND window_count <= :hourly"
                values[":hourly"] = _n(record.builds_per_hour - count)
            else:  # the first build of a new window: the count starts afresh, unless another caller started it
                update = (
                    "SET quota_window = :window, window_count = :count, last_used_at = :now"
                    " ADD builds_started :count, in_flight :keys"
                )
                condition += " AND quota_window < :window"
            try:
                answer = self._client.update_item(
                    TableName=self._table,
                    Key={"token_hash": {"S": token_hash}},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except self._conditional_failed:
                continue  # another writer changed the token since the read: read it again
            except Exception as exc:
                raise _unavailable(exc) from None
            return True, _record(answer["Attributes"])
        raise FarmUnavailable(f"could not update token counters after {_MAX_ROUNDS} tries")

    def forget_in_flight(self, token_hash: str, keys: tuple[str, ...]) -> None:
        if not keys:
            return
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"token_hash": {"S": token_hash}},
                UpdateExpression="DELETE in_flight :keys",
                ConditionExpression="attribute_exists(token_hash)",  # an update must not create a token
                ExpressionAttributeValues={":keys": {"SS": list(keys)}},
            )
        except self._conditional_failed:
            return
        except Exception as exc:
            raise _unavailable(exc) from None
