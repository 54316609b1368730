"""Rehearsal of issue 8's EC2 worker install: "installed by user data from the artifact bucket and run under systemd".

moto runs no instances, so this plays one instance's first boot on this machine with real processes:

1. `build_worker_package` is uploaded to a deployment bucket on the session's moto under the key `pkgc farm deploy`
   uses (`package_key`).
2. The launch template's UserData is taken from infra/workers.yaml (the project's CloudFormation loader), its `!Sub`
   resolved with this farm's values, and run with bash in a temporary root. The deviations, each asserted to apply:
   - fixed paths move under the root: /opt/pkgc -> ROOT/opt/pkgc, /etc/... -> ROOT/etc/..., /var/log -> ROOT/log,
     /var/lib/pkgc -> ROOT/var/lib/pkgc (the home useradd would make; the test makes it);
   - `apt-get`, `useradd` and `systemctl` are stubs first on PATH that record their arguments (root, a package
     mirror, a running systemd); the test checks the arguments. Everything else runs: curl, install, chmod (on the
     moved paths it needs no root), python3 (the test's interpreter), the S3 download (boto3 against moto through
     AWS_ENDPOINT_URL), pip;
   - the metadata service `http://169.254.169.254` is rewritten to a loopback stub that demands IMDSv2 tokens (as
     the template's `HttpTokens: required` does) and serves the instance id of a moto Auto Scaling group's instance;
   - offline: the venv is made with `--system-site-packages` and pip runs with PIP_NO_INDEX=1, so `pip install`
     finds the requirements already installed for this interpreter instead of downloading them.
3. The worker is started as infra/worker/pkgc-worker.service (the copy the user data installed) says: its
   Environment=, EnvironmentFile= (the file the user data wrote), WorkingDirectory= and ExecStart with ${...}
   expanded, paths moved as above, in systemd's clean environment plus the loopback-only test settings (moto
   endpoint, sandbox required, sources seeded as in test_aws_flow, the IMDS stub for the interruption watch). It
   takes a real job from the farm's SQS queue (resolved through the API Lambda), builds hello to READY with scale-in
   protection of its instance on, and stops cleanly within TimeoutStopSec on the unit's KillSignal.
4. `systemd-analyze verify` checks the unit's syntax (no running systemd needed).
Not rehearsed: running as the user pkgc, the unit's hardening (ProtectSystem, PrivateTmp...), Restart=.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from pkgc.core.protocol import BuildStatus
from pkgc.farm.deploy import WORKER_UNIT, build_worker_package, infra_dir, load_template, package_key
from pkgc.worker.prefetch import seed_cache
from tests.e2e.test_aws_flow import PLATFORM, AwsFlow, make_flow  # noqa: F401  # make_flow: the farm fixture
from tests.infra.cfn import resolve
from tests.infra.worker_host import create_deployment_bucket, is_protected, launch_group_instance
from tests.moto_server import REGION, MotoServer

pytestmark = pytest.mark.e2e

STACK = "rehearsal"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # systemd's PATH for services
STUBBED = ("apt-get", "useradd", "systemctl")


class _Imds(http.server.ThreadingHTTPServer):
    """The instance metadata service of one instance, IMDSv2 only: a token from PUT /latest/api/token, then GETs
    with it; the instance id; 404 for the rest (no Spot interruption notice)."""

    daemon_threads = True

    def __init__(self, instance_id: str) -> None:
        super().__init__(("127.0.0.1", 0), _ImdsHandler)
        self.instance_id = instance_id
        self.token = "imds-token-of-the-rehearsal"
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, with a valid token)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ImdsHandler(http.server.BaseHTTPRequestHandler):
    server: _Imds

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        self.server.requests.append(("PUT", self.path, False))
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._send(200, self.server.token.encode())
        else:
            self._send(400)

    def do_GET(self) -> None:
        valid = self.headers.get("X-aws-ec2-metadata-token") == self.server.token
        self.server.requests.append(("GET", self.path, valid))
        if not valid:
            self._send(401)
        elif self.path == "/latest/meta-data/instance-id":
            self._send(200, self.server.instance_id.encode())
        else:
            self._send(404)


@pytest.fixture
def imds() -> Iterator[Callable[[str], _Imds]]:
    servers: list[_Imds] = []

    def start(instance_id: str) -> _Imds:
        server = _Imds(instance_id)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


def _moved(root: Path) -> Callable[[str], str]:
    """The rehearsal's path map: the instance's fixed paths under `root`."""
    prefixes = {"/opt/pkgc": "opt/pkgc", "/etc": "etc", "/var/log": "log", "/var/lib/pkgc": "var/lib/pkgc"}

    def move(path: str) -> str:
        for prefix, inside in prefixes.items():
            if path == prefix or path.startswith(prefix + "/"):
                return f"{root}/{inside}{path[len(prefix) :]}"
        return path

    return move


def _user_data(values: Mapping[str, str]) -> str:
    """The launch template's UserData script, its `!Sub` resolved (an unknown name fails: KeyError)."""
    template = load_template(infra_dir() / "workers.yaml")
    data = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]
    return str(resolve(data, values))


def _rehearsal_script(script: str, root: Path, imds_url: str) -> str:
    """The script with the deviations of the module docstring; each must apply, so a changed template fails here."""
    rewrites = [
        ("http://169.254.169.254", imds_url),
        ("python3 -m venv /opt/pkgc/venv", "python3 -m venv --system-site-packages /opt/pkgc/venv"),
        ("/opt/pkgc/", f"{root}/opt/pkgc/"),
        ("/etc/pkgc-worker.env", f"{root}/etc/pkgc-worker.env"),
        ("/etc/systemd/system/", f"{root}/etc/systemd/system/"),
        ("/var/log/", f"{root}/log/"),
        ("/var/lib/pkgc ", f"{root}/var/lib/pkgc "),
    ]
    for old, new in rewrites:
        assert old in script, f"the user data no longer has {old!r}: update the rehearsal"
        script = script.replace(old, new)
    outside = re.findall(r"(?<![\w./-])/(?:opt|etc|var)/\S*", script.replace(str(root), "ROOT"))
    assert not outside, f"the rehearsal would write outside its root: {outside}"
    return script


def _parse_unit(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> values (in order), with systemd's comment and continuation rules."""
    found: dict[str, list[str]] = {}
    section = ""
    lines = iter(text.replace("\\\n", " ").splitlines())
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def _parse_env_file(text: str) -> dict[str, str]:
    """An EnvironmentFile= as systemd reads it: KEY=VALUE lines, a value in '...' taken literally, "..." unescaped."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()), f"not an assignment: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        env[key.strip()] = value
    return env


def _expand(word: str, env: Mapping[str, str]) -> str:
    """systemd's ${NAME} in ExecStart; an unset or empty variable fails (systemd would pass an empty word)."""

    def value(match: re.Match[str]) -> str:
        found = env.get(match.group(1), "")
        assert found, f"ExecStart uses ${{{match.group(1)}}}, which the environment does not set"
        return found

    return re.sub(r"\$\{(\w+)\}", value, word)


def test_user_data_installs_the_worker_from_the_bucket_and_the_unit_runs_it(
    make_flow: Callable[..., AwsFlow],  # noqa: F811  # test_aws_flow's fixture, imported above
    moto_server: MotoServer,
    imds: Callable[[str], _Imds],
    tmp_path: Path,
) -> None:
    flow = make_flow()
    settings_env = flow.farm_env
    root = tmp_path / "instance"
    assert re.fullmatch(r"[A-Za-z0-9/_.-]+", str(root)), "the script's paths are not quoted: keep the root plain"
    move = _moved(root)

    # 1. What `pkgc farm deploy` uploads, where it uploads it.
    bucket = create_deployment_bucket(moto_server)
    package = build_worker_package(tmp_path / "worker.zip")
    key = package_key(STACK, "worker", package)
    from pkgc.farm.adapters.aws_deploy import AwsDeployTarget

    AwsDeployTarget(REGION).upload(bucket, key, package.read_bytes())  # AWS_ENDPOINT_URL: the session moto

    # The instance: one of the group the template names, its id served by the metadata service.
    workers = load_template(infra_dir() / "workers.yaml")["Resources"]["Group"]["Properties"]
    group = resolve(workers["AutoScalingGroupName"], {"AWS::StackName": STACK})
    instance_id = launch_group_instance(moto_server, group)
    metadata = imds(instance_id)

    # 2. The user data, resolved with this farm's values, in the temporary root.
    values = {
        "AWS::Region": REGION, "AWS::StackName": STACK, "ArtifactBucket": bucket, "WorkerPackageKey": key,
        "Platform": PLATFORM, "BuildsTable": settings_env["PKGC_AWS_BUILDS_TABLE"],
        "CatalogTable": settings_env["PKGC_AWS_CATALOG_TABLE"], "TokensTable": settings_env["PKGC_AWS_TOKENS_TABLE"],
        "BlobBucket": settings_env["PKGC_AWS_BUCKET"], "QueueUrl": json.loads(settings_env["PKGC_AWS_QUEUES"])[PLATFORM],
        "CdnUrl": "", "TopicArn": settings_env.get("PKGC_AWS_TOPIC_ARN", ""),
    }  # fmt: skip
    script = _rehearsal_script(_user_data(values), root, metadata.url)
    for directory in ("opt", "etc/systemd/system", "log", "var/lib/pkgc", "root"):
        (root / directory).mkdir(parents=True)  # what the image has; var/lib/pkgc: what useradd --create-home makes
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "stub-calls"
    for name in STUBBED:
        (stubs / name).write_text(
            '#!/bin/sh\n{ printf %s "$(basename "$0")"; for a; do printf "\\t%s" "$a"; done; echo; } >>"$STUB_CALLS"\n'
        )
        (stubs / name).chmod(0o755)
    (stubs / "python3").symlink_to(sys.executable)  # the interpreter whose site-packages hold the requirements
    boot_env = {
        **{k: v for k, v in moto_server.env().items() if not k.startswith("AWS_") or k in (
            "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
            "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")},  # no region: the script must name it
        "PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(root / "root"), "LANG": "C.UTF-8",
        "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "STUB_CALLS": str(calls),
    }  # fmt: skip
    booted = subprocess.run(
        ["bash", "-c", script], env=boot_env, cwd="/", stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    setup_log = root / "log" / "pkgc-worker-setup.log"
    assert booted.returncode == 0, f"{booted.stderr}\n{setup_log.read_text() if setup_log.exists() else ''}"

    recorded = [line.split("\t") for line in calls.read_text().splitlines()]
    installed = next(c for c in recorded if c[:2] == ["apt-get", "install"])
    assert ["apt-get", "update", "-qq"] in recorded and recorded.index(["apt-get", "update", "-qq"]) == 0
    assert {"-y", "bubblewrap", "gcc", "g++", "make", "python3", "python3-venv", "curl", "zstd"} <= set(installed)
    if subprocess.run(["id", "pkgc"], capture_output=True, check=False).returncode != 0:
        assert ["useradd", "--system", "--create-home", "--home-dir", move("/var/lib/pkgc"),
                "--shell", "/usr/sbin/nologin", "pkgc"] in recorded  # fmt: skip
    assert [c for c in recorded if c[0] == "systemctl"] == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", WORKER_UNIT],
    ]
    opt = root / "opt" / "pkgc"
    assert (opt / "worker.zip").read_bytes() == package.read_bytes(), "the package came from the bucket"
    assert (opt / "lib" / "pkgc" / "worker" / "__main__.py").is_file() and (opt / "venv" / "bin" / "python").exists()
    assert [m for m, p, _ in metadata.requests[:2]] == ["PUT", "GET"] and metadata.requests[1][2], "IMDSv2"
    unit_path = root / "etc" / "systemd" / "system" / WORKER_UNIT
    env_path = root / "etc" / "pkgc-worker.env"
    assert unit_path.read_bytes() == (infra_dir() / "worker" / WORKER_UNIT).read_bytes()
    assert stat.S_IMODE(unit_path.stat().st_mode) == 0o644 and stat.S_IMODE(env_path.stat().st_mode) == 0o644
    env_file = _parse_env_file(env_path.read_text())
    assert env_file["PKGC_INSTANCE_ID"] == instance_id and env_file["PKGC_PLATFORM"] == PLATFORM
    assert env_file["PKGC_AWS_ASG_NAME"] == group
    assert env_file["PKGC_REQUIRE_SANDBOX"] == "1", "a production worker refuses to build without bubblewrap"

    # 3. The worker as the unit starts it.
    unit = _parse_unit(unit_path.read_text())
    assert unit["Service.User"] == ["pkgc"] and unit["Service.EnvironmentFile"] == ["/etc/pkgc-worker.env"]
    service_env = {"PATH": SYSTEMD_PATH}
    for line in unit.get("Service.Environment", []):
        for assignment in shlex.split(line):
            name, _, value = assignment.partition("=")
            service_env[name] = value
    service_env.update(env_file)
    (exec_start,) = unit["Service.ExecStart"]
    argv = [_expand(word, service_env) for word in shlex.split(exec_start)]
    home = service_env["HOME"]
    assert unit["Service.WorkingDirectory"] == [home] and home == "/var/lib/pkgc", "useradd's --home-dir"
    assert "--workdir" in argv, "the worker's default work directory (/var/lib/pkgc-worker) is not pkgc's to create"
    workdir = argv[argv.index("--workdir") + 1]
    assert workdir == home or workdir.startswith(home + "/"), "the user pkgc can write its home only"
    assert argv[argv.index("--id") + 1] == instance_id
    service_env = {k: move(v) if k in ("HOME", "PYTHONPATH") else v for k, v in service_env.items()}
    seed_cache(Path(move(workdir)) / "sources", ["hello"])
    test_only = {
        **{k: v for k, v in moto_server.env().items() if k not in service_env},  # endpoint, fake credentials
        "PKGC_REQUIRE_SANDBOX": "1", "PKGC_FETCH_LOOPBACK_ONLY": "1",
        "PKGC_WORKER_IMDS_URL": metadata.url, "PKGC_WORKER_IMDS_INTERVAL": "1",
    }  # fmt: skip
    journal = (tmp_path / "journal.log").open("w")
    worker = subprocess.Popen(
        [move(word) for word in argv], env={**service_env, **test_only}, cwd=move(home),
        stdin=subprocess.DEVNULL, stdout=journal, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        build = flow.resolve()
        protected_while_building = False
        deadline = time.monotonic() + 300
        while not (record := flow.record(build)).status.finished:
            assert worker.poll() is None, (tmp_path / "journal.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "journal.log").read_text()
            if record.status == BuildStatus.BUILDING and not protected_while_building:
                protected_while_building = is_protected(moto_server, instance_id)
            time.sleep(0.3)
        assert record.status == BuildStatus.READY, f"{record.error}\n{(tmp_path / 'journal.log').read_text()}"
        assert record.artifact is not None and flow.ports.blobs.exists(record.artifact)
        assert (record.lease_owner or "") == "" and record.attempts == 1
        assert protected_while_building, "the worker protected its instance (PKGC_AWS_ASG_NAME, its id) while building"

        # Stop it as systemd does (KillSignal to the unit's processes) and wait no longer than TimeoutStopSec.
        (kill_signal,) = unit["Service.KillSignal"]
        (timeout_stop,) = unit["Service.TimeoutStopSec"]
        os.killpg(worker.pid, getattr(signal, kill_signal))
        assert worker.wait(timeout=float(timeout_stop)) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        journal.close()
    log = (tmp_path / "journal.log").read_text()
    assert "stopped" in log.splitlines()[-1], log
    assert "cannot turn scale-in protection" not in log, log
    assert not is_protected(moto_server, instance_id), "the protection is lifted when the worker stops"
    imported = subprocess.run(
        [move(argv[0]), "-c", "import pkgc; print(pkgc.__file__)"], env={**service_env, **test_only}, cwd=move(home),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert imported.stdout.strip() == str(opt / "lib" / "pkgc" / "__init__.py"), "the package, not a checkout"


def test_systemd_analyze_verify_finds_no_syntax_error_in_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` loads the unit without a running systemd. On a machine that is not an installed
    worker it also reports what only the instance has (/opt/pkgc/venv/bin/python, the user pkgc); those lines are
    left out, and every other line it prints (an unknown key or section, a value it cannot parse) fails the test."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = tmp_path / WORKER_UNIT
    unit.write_bytes((infra_dir() / "worker" / WORKER_UNIT).read_bytes())
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": SYSTEMD_PATH, "SYSTEMD_LOG_COLOR": "0", "LANG": "C.UTF-8"},
    )  # fmt: skip
    expected = re.compile(r"Command /opt/pkgc/venv/bin/python is not executable|user pkgc|Failed to resolve user")
    problems = [line for line in (done.stdout + done.stderr).splitlines() if line.strip() and not expected.search(line)]
    assert problems == [], problems
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("KillSignal=", "KillSignall="))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(broken)], capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": SYSTEMD_PATH, "SYSTEMD_LOG_COLOR": "0", "LANG": "C.UTF-8"},
    )  # fmt: skip
    assert "Unknown key 'KillSignall'" in done.stdout + done.stderr, "the check can fail"
