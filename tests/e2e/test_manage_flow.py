"""End-to-end: remove, files, owner, verify and the prefix lock, through the real CLI and a real farm."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkgc.client.lock import prefix_lock
from tests.conftest import FarmEnv

pytestmark = pytest.mark.e2e


def user_files(prefix: Path) -> list[str]:
    return sorted(p.relative_to(prefix).as_posix() for p in prefix.rglob("*") if ".pkgc" not in p.parts)


def blocked_on_a_lock(pid: int) -> bool:
    """Whether `pid` is waiting for a file lock: the kernel lists each waiter in /proc/locks after a '->'."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[5] == str(pid):
            return True
    return False


def test_files_owner_verify_and_remove(farm: FarmEnv) -> None:
    prefix = farm.root / "manage"
    farm.pkgc("install", "pigz", "--prefix", str(prefix), check=True)
    p = ("--prefix", str(prefix))

    owned = json.loads(farm.pkgc("files", "pigz", "--json", *p, check=True).stdout)
    assert "bin/pigz" in {f["path"] for f in owned}
    assert (
        json.loads(farm.pkgc("owner", str(prefix / "bin/pigz"), "--json", *p, check=True).stdout)["package"] == "pigz"
    )
    assert "owned by zlib" in farm.pkgc("owner", "lib/libz.so.1", *p, check=True).stdout
    assert farm.pkgc("owner", "bin/nothing", *p).returncode == 3
    assert farm.pkgc("owner", "/etc/passwd", *p).returncode == 2

    assert farm.pkgc("verify", *p).returncode == 0
    (prefix / "bin/pigz").chmod(0o700)
    man_pages = [f["path"] for f in owned if f["path"].startswith("share/man")]
    assert man_pages, "pigz installs a manual page"
    with (prefix / man_pages[0]).open("ab") as page:
        page.write(b"tampered")
    problems = json.loads(farm.pkgc("verify", "--json", *p).stdout)
    assert {(x["path"], x["kind"]) for x in problems} == {("bin/pigz", "mode changed"), (man_pages[0], "modified")}
    assert farm.pkgc("verify", *p).returncode == 6
    (prefix / man_pages[0]).unlink()
    assert "missing" in {x["kind"] for x in json.loads(farm.pkgc("verify", "--json", *p).stdout)}

    refused = farm.pkgc("remove", "zlib", *p)
    assert refused.returncode == 7 and "zlib is needed by pigz" in refused.stderr
    assert (prefix / "lib/libz.so.1").exists()

    before = set(user_files(prefix))
    farm.pkgc("remove", "pigz", *p, check=True)
    after = set(user_files(prefix))
    assert not any(path.startswith("bin") for path in after), "bin/ was pigz's alone and is pruned"
    still_there = {f["path"] for f in owned if f["type"] != "dir"} - {man_pages[0]}  # that one was deleted above
    assert still_there <= before - after
    assert json.loads(farm.pkgc("list", "--json", *p, check=True).stdout)[0]["name"] == "zlib"

    farm.pkgc("remove", "zlib", *p, check=True)
    assert user_files(prefix) == []
    assert farm.pkgc("remove", "zlib", *p).returncode == 3


def test_remove_cascade_takes_the_dependents(farm: FarmEnv) -> None:
    prefix = farm.root / "cascade"
    farm.pkgc("install", "pigz", "--prefix", str(prefix), check=True)
    result = json.loads(farm.pkgc("remove", "zlib", "--cascade", "--json", "--prefix", str(prefix), check=True).stdout)
    assert sorted(item["name"] for item in result["removed"]) == ["pigz", "zlib"]
    assert user_files(prefix) == []


def test_second_writer_waits_for_the_lock_or_fails_at_once(farm: FarmEnv) -> None:
    prefix = farm.root / "locked"
    farm.pkgc("install", "lz4", "--prefix", str(prefix), check=True)
    with prefix_lock(prefix):
        busy = farm.pkgc("remove", "lz4", "--no-wait", "--prefix", str(prefix))
        assert busy.returncode == 7 and "another pkgc is changing" in busy.stderr
        waiting = subprocess.Popen(
            [sys.executable, "-m", "pkgc", "remove", "lz4", "--prefix", str(prefix)],
            env=farm.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not blocked_on_a_lock(waiting.pid) and waiting.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert blocked_on_a_lock(waiting.pid), "the second pkgc waits for the lock while it is held"
        assert waiting.poll() is None
        assert (prefix / "bin/lz4").exists()
    _out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert not (prefix / "bin/lz4").exists()


def test_two_packages_shipping_one_file_stop_before_touching_anything(farm: FarmEnv) -> None:
    prefix = farm.root / "clash"
    farm.pkgc("install", "greet@1.0", "--prefix", str(prefix), check=True)
    before = user_files(prefix)
    clash = farm.pkgc("install", "impostor", "--prefix", str(prefix))
    assert clash.returncode == 7
    assert "bin/greet is owned by greet, and impostor ships it too" in clash.stderr
    assert user_files(prefix) == before
    assert [p["name"] for p in json.loads(farm.pkgc("list", "--json", "--prefix", str(prefix)).stdout)] == ["greet"]
    assert farm.pkgc("verify", "--prefix", str(prefix)).returncode == 0


def test_two_concurrent_installs_on_one_prefix_both_land(farm: FarmEnv) -> None:
    prefix = farm.root / "concurrent"
    for name in ("greet@1.0", "lz4"):  # make sure both builds exist, so the installs overlap in time
        farm.pkgc("install", name, "--prefix", str(farm.root / "concurrent-warm"), check=True)
    runs = [
        subprocess.Popen(farm.pkgc_argv("install", name, "--prefix", str(prefix)), env=farm.env, stderr=subprocess.PIPE)
        for name in ("greet@1.0", "lz4")
    ]
    for run in runs:
        assert run.wait(timeout=120) == 0
    names = sorted(p["name"] for p in json.loads(farm.pkgc("list", "--json", "--prefix", str(prefix)).stdout))
    assert names == ["greet", "lz4"]
    assert farm.pkgc("verify", "--prefix", str(prefix)).returncode == 0


def test_unreachable_farm_is_a_clear_error_and_changes_nothing(farm: FarmEnv, tmp_path: Path) -> None:
    prefix = tmp_path / "offline"
    env = {**farm.env, "PKGC_FARM": "http://127.0.0.1:9"}  # the discard port: nothing listens there
    result = subprocess.run(
        farm.pkgc_argv("install", "hello", "--prefix", str(prefix)), env=env, capture_output=True, text=True
    )
    assert result.returncode == 4
    assert result.stderr.startswith("error: cannot reach the farm at http://127.0.0.1:9")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any(p for p in prefix.rglob("*") if ".pkgc" not in p.parts)


def test_interrupted_download_resumes_where_it_stopped(farm: FarmEnv, tmp_path: Path) -> None:
    farm.pkgc("install", "hello", "--prefix", str(tmp_path / "warm"), check=True)
    with farm.api() as api:
        body = api.post("/v1/resolve", json={"packages": [{"name": "hello"}]}).json()
        build = next(b for b in body["builds"] if b["key"] == body["requested"][0])
        whole = api.get(build["url"]).content
    cache = tmp_path / "cache"
    partial = cache / "pkgc" / "artifacts" / f"{build['sha256']}.tar.zst.part"
    partial.parent.mkdir(parents=True)
    half = len(whole) // 2
    partial.write_bytes(whole[:half])  # what an interrupted download left behind
    trace = tmp_path / "trace.log"
    env = {**farm.env, "XDG_CACHE_HOME": str(cache), "PKGC_TRACE_HTTP": str(trace)}
    result = subprocess.run(
        farm.pkgc_argv("install", "hello", "--prefix", str(tmp_path / "prefix")),
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert f"GET {build['url']} bytes={half}-" in trace.read_text().splitlines()
    assert (cache / "pkgc" / "artifacts" / f"{build['sha256']}.tar.zst").read_bytes() == whole
    assert not partial.exists()
