"""In-memory fake of the TokenStore port: the reference semantics the SQLite and DynamoDB adapters must match.

One lock makes every operation atomic, as the conditional write is on the real stores.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from pkgc.farm.ports import TokenRecord, hour_window


class MemoryTokenStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, TokenRecord] = {}

    def create(self, record: TokenRecord) -> bool:
        with self._lock:
            if record.token_hash in self._tokens:
                return False
            self._tokens[record.token_hash] = record
            return True

    def get(self, token_hash: str) -> TokenRecord | None:
        with self._lock:
            return self._tokens.get(token_hash)

    def list_tokens(self) -> list[TokenRecord]:
        with self._lock:
            return sorted(self._tokens.values(), key=lambda r: (r.created_at, r.name))

    def revoke(self, token_hash: str, now: float) -> bool:
        with self._lock:
            record = self._tokens.get(token_hash)
            if record is None or record.revoked:
                return False
            self._tokens[token_hash] = replace(record, revoked_at=now)
            return True

    def admit(self, token_hash: str, now: float, keys: tuple[str, ...]) -> tuple[bool, TokenRecord | None]:
        window = hour_window(now)
        with self._lock:
            record = self._tokens.get(token_hash)
            if record is None:
                return False, None
            if (
                record.revoked
                or record.started_in_window(window) + len(keys) > record.builds_per_hour
                or len(record.in_flight) + len(keys) > record.max_in_flight
            ):
                return False, record
            record = replace(
                record,
                window=window,
                window_count=record.started_in_window(window) + len(keys),
                in_flight=tuple(sorted({*record.in_flight, *keys})),
                builds_started=record.builds_started + len(keys),
                last_used_at=now,
            )
            self._tokens[token_hash] = record
            return True, record

    def forget_in_flight(self, token_hash: str, keys: tuple[str, ...]) -> None:
        with self._lock:
            record = self._tokens.get(token_hash)
            if record is not None:
                gone = set(keys)
                self._tokens[token_hash] = replace(
                    record, in_flight=tuple(k for k in record.in_flight if k not in gone)
                )
