"""The hermetic build root (pkgc.worker.buildroot): made from dpkg's records of a fake host, and of the real one
with bubblewrap, where a build must find its toolchain and must not find the host's other libraries."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pkgc.core.toolchain import load_toolchain
from pkgc.worker.buildroot import (
    ToolchainMissing,
    check_host,
    make_root,
    package_closure,
    read_diversions,
    read_status,
)
from pkgc.worker.sandbox import CommandFailed, Sandbox, bubblewrap_path

STATUS = """Package: tool
Status: install ok installed
Architecture: amd64
Version: 1.0-1
Depends: libfoo1 (>= 1.0), awk | mawk, perlapi-5.36:any

Package: libfoo1
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.0-3
Pre-Depends: libc6

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9

Package: mawk
Status: install ok installed
Architecture: amd64
Version: 1.3.4
Provides: awk

Package: perl-base
Status: install ok installed
Architecture: amd64
Version: 5.36.0-7
Provides: perlapi-5.36

Package: removed
Status: deinstall ok config-files
Architecture: amd64
Version: 0.1

Package: unrelated
Status: install ok installed
Architecture: amd64
Version: 9
"""


def _fake_host(tmp_path: Path) -> tuple[Path, Path]:
    """A host with merged /usr, dpkg's status, file lists, a diversion and an alternative."""
    host = tmp_path / "host"
    admin = host / "var" / "lib" / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "alternatives").mkdir()
    (admin / "status").write_text(STATUS)
    for directory in ("usr/bin", "usr/lib/x86_64-linux-gnu", "usr/include/foo", "etc/alternatives"):
        (host / directory).mkdir(parents=True)
    (host / "bin").symlink_to("usr/bin")
    (host / "lib").symlink_to("usr/lib")
    files = {
        "usr/bin/tool": "tool", "usr/lib/x86_64-linux-gnu/libfoo.so.1": "foo", "usr/include/foo/foo.h": "h",
        "usr/bin/mawk": "mawk", "usr/bin/perl": "perl", "usr/bin/unrelated": "x", "usr/bin/sh.distrib": "bash's sh",
        "usr/lib/x86_64-linux-gnu/libc.so.6": "libc",
    }  # fmt: skip
    for name, text in files.items():
        (host / name).write_text(text)
    (host / "usr/lib/x86_64-linux-gnu/libfoo.so").symlink_to("libfoo.so.1")
    (host / "usr/bin/sh").symlink_to("tool")
    lists = {
        # dpkg lists some files under /bin and /lib although they live in /usr (merged /usr).
        "tool.list": "/.\n/bin\n/bin/tool\n/bin/sh\n/usr/share/doc/tool\n/usr/share/doc/tool/copyright\n",
        "libfoo1:amd64.list": "/.\n/usr/lib/x86_64-linux-gnu/libfoo.so.1\n/usr/lib/x86_64-linux-gnu/libfoo.so\n"
        "/usr/include/foo/foo.h\n",
        "libc6.list": "/lib/x86_64-linux-gnu/libc.so.6\n",
        "mawk.list": "/usr/bin/mawk\n",
        "perl-base.list": "/usr/bin/perl\n/bin/sh\n",
        "unrelated.list": "/usr/bin/unrelated\n",
    }
    for name, text in lists.items():
        (admin / "info" / name).write_text(text)
    # perl-base's /bin/sh is diverted by "tool" to /bin/sh.distrib.
    (admin / "diversions").write_text("/bin/sh\n/bin/sh.distrib\ntool\n")
    (admin / "alternatives" / "awk").write_text("auto\n/usr/bin/awk\nnawk\n/usr/bin/nawk\n\n/usr/bin/mawk\n5\n\n")
    (host / "etc/alternatives/awk").symlink_to("/usr/bin/mawk")
    (host / "etc/alternatives/nawk").symlink_to("/usr/bin/mawk")
    (host / "usr/bin/awk").symlink_to("/etc/alternatives/awk")
    (host / "usr/bin/nawk").symlink_to("/etc/alternatives/nawk")
    return host, admin


def _definition(*packages: str) -> object:
    return replace(load_toolchain(), toolchain=packages, tools={"extra": ("unrelated",)})


def test_the_closure_follows_depends_alternatives_and_provides(tmp_path: Path) -> None:
    _, admin = _fake_host(tmp_path)
    installed = read_status(admin)
    assert "removed" not in installed, "only installed packages count"
    closure = package_closure(["tool"], installed, "amd64")
    assert sorted(closure) == ["libc6", "libfoo1", "mawk", "perl-base", "tool"]
    with pytest.raises(ToolchainMissing, match="absent"):
        package_closure(["tool", "absent"], installed, "amd64")
    assert read_diversions(admin) == {"/bin/sh": ("/bin/sh.distrib", "tool")}


def test_a_root_holds_the_closure_and_nothing_else(tmp_path: Path) -> None:
    host, admin = _fake_host(tmp_path)
    definition = _definition("tool")
    root = make_root(definition, (), "make", tmp_path / "roots", admin=admin, host=host)  # type: ignore[arg-type]
    assert (root / "usr/bin/tool").read_text() == "tool"
    assert os.readlink(root / "bin") == "usr/bin", "merged /usr: /bin/tool was placed at /usr/bin/tool"
    assert (root / "usr/lib/x86_64-linux-gnu/libc.so.6").stat().st_ino == (
        host / "usr/lib/x86_64-linux-gnu/libc.so.6"
    ).stat().st_ino, "files are hard links on one filesystem"
    assert os.readlink(root / "usr/lib/x86_64-linux-gnu/libfoo.so") == "libfoo.so.1"
    assert (root / "usr/include/foo/foo.h").exists()
    assert os.readlink(root / "usr/bin/awk") == "/etc/alternatives/awk"
    assert os.readlink(root / "etc/alternatives/awk") == "/usr/bin/mawk"
    assert (root / "usr/bin/sh.distrib").read_text() == "bash's sh", "perl-base's diverted /bin/sh"
    assert os.readlink(root / "usr/bin/sh") == "tool", "the diverting package keeps its own /bin/sh"
    assert not (root / "usr/bin/unrelated").exists(), "a package outside the closure is not in the root"
    assert not (root / "usr/share/doc").exists(), "paths the host does not have are skipped"
    assert "root:x:0:0" in (root / "etc/passwd").read_text()
    again = make_root(definition, (), "make", tmp_path / "roots", admin=admin, host=host)  # type: ignore[arg-type]
    assert again == root, "made once, then found"
    with_tool = make_root(definition, ("extra",), "make", tmp_path / "roots", admin=admin, host=host)  # type: ignore[arg-type]
    assert with_tool != root and (with_tool / "usr/bin/unrelated").exists(), "a named tool's packages are added"
    assert not [p for p in (tmp_path / "roots").iterdir() if p.name.startswith(".")], "no half-made root is left"


def test_a_new_package_version_makes_a_new_root(tmp_path: Path) -> None:
    host, admin = _fake_host(tmp_path)
    definition = _definition("tool")
    first = make_root(definition, (), "make", tmp_path / "roots", admin=admin, host=host)  # type: ignore[arg-type]
    status = admin / "status"
    status.write_text(status.read_text().replace("Version: 2.0-3", "Version: 2.0-4"))
    abandoned = tmp_path / "roots" / ".making-killed"  # a worker was killed while making a root, long ago
    (abandoned / "usr").mkdir(parents=True)
    os.utime(abandoned, (time.time() - 7200, time.time() - 7200))
    second = make_root(definition, (), "make", tmp_path / "roots", admin=admin, host=host)  # type: ignore[arg-type]
    assert second != first
    assert not abandoned.exists(), "making a root removes the half-made ones of killed workers"


def test_two_workers_making_the_same_root_at_once_agree(tmp_path: Path) -> None:
    host, admin = _fake_host(tmp_path)
    definition = _definition("tool")
    made: list[Path] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            made.append(make_root(definition, (), "make", tmp_path / "roots", admin=admin, host=host))  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(made)) == 1 and len(made) == 4
    assert [p.name for p in (tmp_path / "roots").iterdir()] == [made[0].name]


def test_a_missing_toolchain_package_is_one_clear_line(tmp_path: Path) -> None:
    _, admin = _fake_host(tmp_path)
    with pytest.raises(ToolchainMissing) as refused:
        check_host(_definition("tool", "gcc-99"), admin=admin)  # type: ignore[arg-type]
    message = str(refused.value)
    assert "gcc-99" in message and "\n" not in message and "not have installed" in message
    with pytest.raises(ToolchainMissing, match="need a Debian host"):
        check_host(_definition("tool"), admin=tmp_path / "nowhere")  # type: ignore[arg-type]
    with pytest.raises(ToolchainMissing, match="gcc-99"):
        make_root(_definition("gcc-99"), (), "make", tmp_path / "roots", admin=admin, host=tmp_path / "host")  # type: ignore[arg-type]


# --- the real host, under bubblewrap --------------------------------------------------------------------------

BWRAP = bubblewrap_path()
needs_bwrap = pytest.mark.skipif(BWRAP is None, reason="bubblewrap cannot create namespaces here")


@pytest.fixture(scope="module")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path("/var/lib/dpkg/status").exists():
        pytest.skip("not a Debian host")
    return make_root(load_toolchain(), (), "autotools", tmp_path_factory.mktemp("roots"))


def _run(root: Path, workdir: Path, script: str) -> tuple[bool, str]:
    sandbox = Sandbox(workdir, bwrap=BWRAP, deadline=time.monotonic() + 120, root=root)
    log_path = workdir / "log"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LANG": "C"}
    with log_path.open("wb") as log:
        try:
            sandbox.run(["sh", "-c", script], cwd=workdir, env=env, log=log)
            ok = True
        except CommandFailed:
            ok = False
    return ok, log_path.read_text()


@needs_bwrap
def test_a_build_in_the_root_compiles_with_its_toolchain(real_root: Path, tmp_path: Path) -> None:
    (tmp_path / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("hello from the root"); return 0; }\n')
    ok, log = _run(real_root, tmp_path, "cc -O2 -o hello hello.c && ./hello && make --version && awk 'BEGIN{print 6*7}'")
    assert ok, log
    assert "hello from the root" in log and "GNU Make" in log and "42" in log


@needs_bwrap
def test_the_hosts_other_libraries_are_not_visible(real_root: Path, tmp_path: Path) -> None:
    # CI's hosts have libreadline-dev and libyaml-dev (this one does): only the root keeps them out.
    (tmp_path / "rl.c").write_text("#include <readline/readline.h>\nint main(void) { return 0; }\n")
    (tmp_path / "plain.c").write_text("int main(void) { return 0; }\n")
    ok, log = _run(real_root, tmp_path, "cc -c rl.c")
    assert not ok and "readline/readline.h: No such file" in log
    ok, log = _run(real_root, tmp_path, "cc -o plain plain.c -lreadline")
    assert not ok and "cannot find -lreadline" in log
    ok, log = _run(real_root, tmp_path, "test ! -e /usr/include/yaml.h && ! pkg-config --exists yaml-0.1 && "
                   "! pkg-config --exists libzstd && test ! -e /usr/bin/perl && test ! -e /var/lib/dpkg/status")  # fmt: skip
    assert ok, log


@needs_bwrap
def test_a_named_tool_is_in_its_root(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    if not Path("/var/lib/dpkg/status").exists():
        pytest.skip("not a Debian host")
    root = make_root(load_toolchain(), ("perl",), "meson", tmp_path_factory.mktemp("roots"))
    ok, log = _run(root, tmp_path, "perl -e 'print 6*7, qq(\\n)' && meson --version && ninja --version")
    assert ok and "42" in log, log


@needs_bwrap
def test_a_work_directory_inside_a_directory_of_the_root_is_writable_and_the_rest_is_not(real_root: Path) -> None:
    # The AWS worker works in /var/lib/pkgc-worker, and /var is one of the root's directories.
    assert (real_root / "var").is_dir()
    workdir = Path(tempfile.mkdtemp(prefix="pkgc-root-test-", dir="/var/tmp"))
    try:
        ok, log = _run(real_root, workdir, "echo made > inside && cat inside && ls /var/lib >/dev/null && "
                       "! touch /etc/probe 2>/dev/null && ! touch /probe 2>/dev/null && ! mkdir /var/probe 2>/dev/null")  # fmt: skip
        assert ok, log
        assert (workdir / "inside").read_text() == "made\n"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_log_says_whether_a_build_is_hermetic(tmp_path: Path) -> None:
    unsandboxed = Sandbox(tmp_path, bwrap=None, deadline=0, root=tmp_path)
    assert unsandboxed.root is None, "without bubblewrap there is no root to bind"
    assert "not hermetic" in unsandboxed.describe() and "host's tools and libraries" in unsandboxed.describe()
    assert "not hermetic" in Sandbox(tmp_path, bwrap="/usr/bin/bwrap", deadline=0).describe()
    hermetic = Sandbox(tmp_path, bwrap="/usr/bin/bwrap", deadline=0, root=tmp_path / "debian-12-1-abc")
    assert "hermetic" in hermetic.describe() and "not hermetic" not in hermetic.describe()
