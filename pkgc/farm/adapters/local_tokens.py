"""The TokenStore port in the embedded farm's SQLite database (tables of their own, created on first use).

`admit` is one transaction that starts with a single conditional UPDATE of the token's counters: SQLite serialises
writers, so the UPDATE holds the write lock before anything else is read or written, and of concurrent callers
never more are admitted than the quotas allow (the same shape as the conditional UpdateItem on DynamoDB). The
in-flight set is a table of (token, build key) rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    case,
    delete,
    func,
    insert,
    select,
    update,
)

from pkgc.farm.ports import TokenRecord, hour_window

token_metadata = MetaData()

tokens_table = Table(
    "tokens",
    token_metadata,
    Column("token_hash", String, primary_key=True),
    Column("name", String, nullable=False, index=True),
    Column("role", String, nullable=False),
    Column("builds_per_hour", Integer, nullable=False),
    Column("max_in_flight", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("quota_window", Integer, nullable=False, default=0),
    Column("window_count", Integer, nullable=False, default=0),
    Column("builds_started", Integer, nullable=False, default=0),
    Column("last_used_at", Float, nullable=False, default=0.0),
)

# The builds each token started that were not yet seen finished: its in-flight set, one row per build.
token_builds_table = Table(
    "token_builds",
    token_metadata,
    Column("token_hash", String, primary_key=True),
    Column("key", String, primary_key=True),
)


class SqliteTokenStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        token_metadata.create_all(engine)  # checkfirst: a database made before tokens existed gets the tables

    def _record(self, conn: Any, row: Any) -> TokenRecord:
        m = row._mapping
        keys = conn.execute(
            select(token_builds_table.c.key)
            .where(token_builds_table.c.token_hash == m["token_hash"])
            .order_by(token_builds_table.c.key)
        ).scalars()
        return TokenRecord(
            token_hash=m["token_hash"],
            name=m["name"],
            role="admin" if m["role"] == "admin" else "user",
            builds_per_hour=int(m["builds_per_hour"]),
            max_in_flight=int(m["max_in_flight"]),
            created_at=float(m["created_at"]),
            revoked_at=None if m["revoked_at"] is None else float(m["revoked_at"]),
            window=int(m["quota_window"]),
            window_count=int(m["window_count"]),
            in_flight=tuple(str(k) for k in keys),
            builds_started=int(m["builds_started"]),
            last_used_at=float(m["last_used_at"]),
        )

    def _read(self, conn: Any, token_hash: str) -> TokenRecord | None:
        row = conn.execute(select(tokens_table).where(tokens_table.c.token_hash == token_hash)).first()
        return None if row is None else self._record(conn, row)

    def create(self, record: TokenRecord) -> bool:
        values = {
            "token_hash": record.token_hash,
            "name": record.name,
            "role": record.role,
            "builds_per_hour": record.builds_per_hour,
            "max_in_flight": record.max_in_flight,
            "created_at": record.created_at,
            "revoked_at": record.revoked_at,
            "quota_window": record.window,
            "window_count": record.window_count,
            "builds_started": record.builds_started,
            "last_used_at": record.last_used_at,
        }
        with self._engine.begin() as conn:
            created = bool(conn.execute(insert(tokens_table).prefix_with("OR IGNORE").values(**values)).rowcount)
            if created and record.in_flight:
                conn.execute(
                    insert(token_builds_table).prefix_with("OR IGNORE"),
                    [{"token_hash": record.token_hash, "key": key} for key in record.in_flight],
                )
        return created

    def get(self, token_hash: str) -> TokenRecord | None:
        with self._engine.connect() as conn:
            return self._read(conn, token_hash)

    def list_tokens(self) -> list[TokenRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(tokens_table).order_by(tokens_table.c.created_at, tokens_table.c.name)).all()
            return [self._record(conn, row) for row in rows]

    def revoke(self, token_hash: str, now: float) -> bool:
        table = tokens_table
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(table)
                .where(table.c.token_hash == token_hash, table.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
        return bool(changed)

    def admit(self, token_hash: str, now: float, keys: tuple[str, ...]) -> tuple[bool, TokenRecord | None]:
        table, flying = tokens_table, token_builds_table
        window, count = hour_window(now), len(keys)
        in_flight = select(func.count()).select_from(flying).where(flying.c.token_hash == token_hash).scalar_subquery()
        started = case((table.c.quota_window == window, table.c.window_count), else_=0)
        with self._engine.begin() as conn:
            # The first statement of the transaction is the conditional write: it takes SQLite's write lock, so
            # the in-flight rows it counts cannot change before this transaction's own inserts below.
            admitted = bool(
                conn.execute(
                    update(table)
                    .where(
                        table.c.token_hash == token_hash,
                        table.c.revoked_at.is_(None),
                        started + count <= table.c.builds_per_hour,
                        in_flight + count <= table.c.max_in_flight,
                    )
                    .values(
                        quota_window=window,
                        window_count=started + count,
                        builds_started=table.c.builds_started + count,
                        last_used_at=now,
                    )
                ).rowcount
            )
            if admitted and keys:
                conn.execute(
                    insert(flying).prefix_with("OR IGNORE"), [{"token_hash": token_hash, "key": k} for k in keys]
                )
            return admitted, self._read(conn, token_hash)

    def forget_in_flight(self, token_hash: str, keys: tuple[str, ...]) -> None:
        if not keys:
            return
        flying = token_builds_table
        with self._engine.begin() as conn:
            conn.execute(delete(flying).where(flying.c.token_hash == token_hash, flying.c.key.in_(list(keys))))
