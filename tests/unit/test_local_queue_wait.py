"""The embedded farm's SQLite queue waits for work without polling its tables (issue 7, point 15: no CPU while idle).

Real time and a real database file: a receiver that waits is woken by a commit from another connection (a send)
or by the moment a delayed job comes due, and in between it checks one pragma, not the receive's queries.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from pkgc.farm.adapters.local import SqliteJobQueue, metadata
from pkgc.sqlite import open_sqlite


def _queue(path: Path, poll: float = 0.05) -> SqliteJobQueue:
    return SqliteJobQueue(open_sqlite(path, metadata), queue="linux-x86_64", poll_interval=poll)


def test_a_waiting_receiver_gets_a_job_another_process_sends(tmp_path: Path) -> None:
    database = tmp_path / "farm.db"
    waiting, sender = _queue(database), _queue(database)  # two engines: two connections, as a worker and the API
    threading.Timer(0.4, lambda: sender.send("late")).start()
    started = time.monotonic()
    job = waiting.receive(visibility_timeout=30, wait=5)
    assert job is not None and job.body == "late"
    assert time.monotonic() - started < 2.0


def test_a_waiting_receiver_gets_a_delayed_job_when_it_comes_due(tmp_path: Path) -> None:
    database = tmp_path / "farm.db"
    queue = _queue(database, poll=1.0)  # a long poll interval: only the due time can wake it in time
    queue.send("later", delay=0.5)
    started = time.monotonic()
    job = queue.receive(visibility_timeout=30, wait=5)
    assert job is not None and job.body == "later"
    assert 0.4 < time.monotonic() - started < 1.5


def test_an_idle_wait_runs_the_receive_queries_twice_not_every_poll(tmp_path: Path) -> None:
    engine = open_sqlite(tmp_path / "farm.db", metadata)
    queue = SqliteJobQueue(engine, queue="linux-x86_64", poll_interval=0.02)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    started = time.monotonic()
    assert queue.receive(visibility_timeout=30, wait=1.0) is None
    assert time.monotonic() - started >= 1.0
    # A look at the start, one when the wait ends, and the due-time query: about eight statements; polling the
    # tables every 20 ms for a second was over a hundred.
    assert len(statements) <= 12, statements
