"""The worker's entry point: `python -m pkgc.worker --id NAME [--backend local|aws] [--platform P] [--home DIR]`.

Its adapters come from the farm's composition root (pkgc/farm/bootstrap.py): the local backend is one worker of
the embedded farm (`--home`), the aws backend a worker on EC2 (`PKGC_AWS_*`, `--platform` names its queue).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
from pathlib import Path

from pkgc.core.errors import PkgcError
from pkgc.core.platform import Platform, detect_platform
from pkgc.core.toolchain import toolchain_for_platform
from pkgc.farm.bootstrap import (
    BACKENDS,
    FarmConfig,
    build_lifecycle,
    close_ports,
    instance_protection,
    open_ports,
)
from pkgc.worker.buildroot import ToolchainMissing, check_host
from pkgc.worker.fetch import SourceFetcher
from pkgc.worker.interruption import DEFAULT_IMDS_URL, IMDS_URL_ENV, InterruptionWatch
from pkgc.worker.loop import Worker, WorkerSettings, report_to_stderr
from pkgc.worker.sandbox import bubblewrap_path

DEFAULT_AWS_WORKDIR = Path("/var/lib/pkgc-worker")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


_PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    """Be killed (SIGKILL) when the supervisor dies, however it dies, so no worker is left taking jobs unseen.

    Linux delivers the signal when the parent exits; the ppid check covers a supervisor that died before the
    prctl, and the worker loop checks the ppid again between jobs where prctl is not available. A build in
    progress dies too (its processes have the same setting), its lease expires and its job comes back; the next
    supervisor removes the work directory.
    """
    expected = os.environ.get("PKGC_FARM_SUPERVISOR_PID", "")
    if not expected.isdigit():
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != int(expected):
        sys.exit(f"worker: the supervisor (pid {expected}) is gone")


EXTRA_RO_ENV = "PKGC_SANDBOX_EXTRA_RO"


def _extra_ro(worker: str) -> tuple[Path, ...]:
    """Host directories shown read-only to every hermetic build (`PKGC_SANDBOX_EXTRA_RO`, colon-separated
    absolute paths of existing directories). Whatever is there is visible to builds without being in their key, so
    this is for tests (a marker that makes a test recipe fail) and debugging, never for a production farm."""
    text = os.environ.get(EXTRA_RO_ENV, "")
    paths = []
    for part in filter(None, text.split(":")):
        path = Path(part)
        if not path.is_absolute() or ".." in path.parts or not path.is_dir() or str(path) in ("/", "/dev", "/proc"):
            raise SystemExit(f"worker {worker}: {EXTRA_RO_ENV}: {part!r} is not an absolute path of a directory")
        paths.append(path)
    return tuple(paths)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pkgc.worker")
    parser.add_argument("--home", type=Path, default=None, help="the embedded farm's home (local backend)")
    parser.add_argument("--id", required=True)
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None, help="default: PKGC_FARM_BACKEND, else local"
    )
    parser.add_argument("--platform", default=None, help="the build platform whose queue to take jobs from")
    parser.add_argument("--workdir", type=Path, default=None, help="sources and builds (aws; local: the home)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-jobs", type=int, default=None)
    args = parser.parse_args(argv)
    _die_with_supervisor()
    os.umask(0o077)  # blobs, logs and sources are the user's alone (build commands run with their own umask)
    try:
        config = FarmConfig.from_env(home=args.home, backend=args.backend)
    except PkgcError as exc:
        raise SystemExit(f"worker {args.id}: {exc}") from None
    platform = args.platform or str(detect_platform())
    if config.backend == "local":
        sources, workroot, roots = config.paths.sources, config.paths.work, config.paths.roots
    else:
        workdir = args.workdir or Path(os.environ.get("PKGC_WORKER_DIR") or DEFAULT_AWS_WORKDIR)
        sources, workroot, roots = workdir / "sources", workdir / "work", workdir / "roots"
    bwrap = None if os.environ.get("PKGC_NO_SANDBOX") else bubblewrap_path()
    if bwrap is None:
        if os.environ.get("PKGC_REQUIRE_SANDBOX") == "1":
            # CI and the tests' farm: an unsandboxed build there would pass silently and prove nothing.
            raise SystemExit(
                f"worker {args.id}: PKGC_REQUIRE_SANDBOX=1, but bubblewrap is missing, cannot create namespaces here, "
                "or PKGC_NO_SANDBOX is set: refusing to build without a sandbox"
            )
        print(
            f"worker {args.id}: bubblewrap is not available; builds run without a sandbox and are not hermetic "
            "(they see the host's tools and libraries)",
            file=sys.stderr,
        )
    else:
        # A hermetic build sees only the toolchain definition's packages: refuse to start without all of them.
        try:
            check_host(toolchain_for_platform(Platform.parse(platform)))
        except (ToolchainMissing, PkgcError, ValueError) as exc:
            raise SystemExit(f"worker {args.id}: {exc}") from None
    visibility = _env_float("PKGC_FARM_VISIBILITY_TIMEOUT", 60.0)
    settings = WorkerSettings(
        worker_id=f"{args.id}-{os.getpid()}",
        workroot=workroot,
        jobs=args.jobs,
        build_timeout=_env_float("PKGC_FARM_BUILD_TIMEOUT", 3600.0),
        visibility_timeout=visibility,
        lease_ttl=_env_float("PKGC_FARM_LEASE_TTL", visibility),
        heartbeat_interval=max(0.5, min(visibility / 4, 5.0)),
        bubblewrap=bwrap,
        roots=roots,
        extra_ro=_extra_ro(args.id),
    )
    try:
        protection = instance_protection(config, args.id)  # AWS: this instance in its Auto Scaling group
    except PkgcError as exc:
        raise SystemExit(f"worker {args.id}: {exc}") from None
    ports = open_ports(config)
    worker = Worker(
        lifecycle=build_lifecycle(config, ports=ports),
        queue=ports.queues.for_platform(platform),
        fetcher=SourceFetcher(sources, loopback_only=os.environ.get("PKGC_FETCH_LOOPBACK_ONLY") == "1"),
        settings=settings,
        protection=protection,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    imds = os.environ.get(IMDS_URL_ENV, "")
    if config.backend == "aws" or imds:
        try:
            InterruptionWatch(
                stop, base_url=imds or DEFAULT_IMDS_URL, interval=_env_float("PKGC_WORKER_IMDS_INTERVAL", 5.0),
                report=report_to_stderr,
            ).start()
        except ValueError as exc:
            raise SystemExit(f"worker {args.id}: {exc}") from None
    supervised = os.environ.get("PKGC_FARM_SUPERVISOR_PID", "")
    try:
        worker.run(stop, max_jobs=args.max_jobs, orphaned=lambda: bool(supervised) and str(os.getppid()) != supervised)
    finally:
        close_ports(ports)  # leave what this worker wrote in farm.db, without waiting for others
    if stop.is_set():
        report_to_stderr(f"worker {settings.worker_id}: stopped")


if __name__ == "__main__":
    main()
