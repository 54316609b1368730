"""End-to-end: `pkgc farm token create|list|revoke` on the embedded farm's database through the real CLI, and
what a user sees when a farm that requires tokens refuses a build (one line, its own exit code, the retry time)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pkgc.farm.token_admin import DEFAULT_BUILDS_PER_HOUR, DEFAULT_IN_FLIGHT
from tests.api.test_access import make_farm
from tests.conftest import serve_asgi, user_env
from tests.moto_server import MotoServer

pytestmark = pytest.mark.e2e


def pkgc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pkgc", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_token_create_list_revoke(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    empty = pkgc(env, "farm", "token", "list")
    assert empty.returncode == 0 and "no tokens" in empty.stdout

    made = pkgc(env, "farm", "token", "create", "ci", "--builds-per-hour", "5", "--in-flight", "2")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("pkgc_") and "\n" not in secret, "the secret alone on stdout, for scripts"
    assert "shown only now" in made.stderr and "5 builds per hour" in made.stderr

    admin = pkgc(env, "farm", "token", "create", "ops", "--admin", "--json")
    assert admin.returncode == 0, admin.stderr
    admin_answer = json.loads(admin.stdout)
    assert admin_answer["role"] == "admin" and admin_answer["token"].startswith("pkgc_")
    assert admin_answer["builds_per_hour"] == DEFAULT_BUILDS_PER_HOUR
    assert admin_answer["max_in_flight"] == DEFAULT_IN_FLIGHT

    again = pkgc(env, "farm", "token", "create", "ci")
    assert again.returncode == 7 and again.stderr.count("\n") == 1 and "a valid token named 'ci' exists" in again.stderr
    bad = pkgc(env, "farm", "token", "create", "bad name")
    assert bad.returncode == 2 and "invalid token name" in bad.stderr
    over = pkgc(env, "farm", "token", "create", "big", "--in-flight", "5000")
    assert over.returncode == 2, "a quota out of bounds is a usage error"

    listed = pkgc(env, "farm", "token", "list", "--json")
    assert listed.returncode == 0
    assert secret not in listed.stdout and admin_answer["token"] not in listed.stdout, "list never shows secrets"
    tokens = {t["name"]: t for t in json.loads(listed.stdout)["tokens"]}
    assert set(tokens) == {"ci", "ops"}
    assert (
        tokens["ci"]["role"] == "user" and tokens["ci"]["builds_per_hour"] == 5 and tokens["ci"]["max_in_flight"] == 2
    )
    assert tokens["ci"]["revoked_at"] is None and tokens["ci"]["builds_this_hour"] == 0

    database = tmp_path / "farm" / "farm.db"
    assert stat.S_IMODE(os.stat(tmp_path / "farm").st_mode) == 0o700, "the farm home stays private"
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT * FROM tokens").fetchall()
        hashes = {row[0] for row in conn.execute("SELECT token_hash FROM tokens")}
    assert secret not in repr(rows), "the database keeps no secret"
    assert hashlib.sha256(secret.encode()).hexdigest() in hashes

    revoked = pkgc(env, "farm", "token", "revoke", "ci")
    assert revoked.returncode == 0 and "revoked token 'ci'" in revoked.stdout
    twice = pkgc(env, "farm", "token", "revoke", "ci")
    assert twice.returncode == 3 and "revoked already" in twice.stderr
    human = pkgc(env, "farm", "token", "list")
    lines = {line.split()[0]: line for line in human.stdout.splitlines()}
    assert "revoked" in lines["ci"] and "valid" in lines["ops"] and "0/5 builds this hour" in lines["ci"]
    remade = pkgc(env, "farm", "token", "create", "ci")
    assert remade.returncode == 0, "a revoked token's name can be given to a new token"


def test_a_refused_build_is_one_line_with_its_reason(tmp_path: Path) -> None:
    farm = make_farm(tmp_path / "farm", "memory")
    empty = farm.token("empty", hourly=0, flying=0)
    for url in serve_asgi(farm.app):
        env = user_env(tmp_path / "user", PKGC_FARM=url)
        prefix = str(tmp_path / "prefix")
        anonymous = pkgc(env, "install", "hello", "--prefix", prefix)
        assert anonymous.returncode == 10, anonymous.stderr
        assert anonymous.stderr.count("\n") == 1, anonymous.stderr
        assert "needs an API token" in anonymous.stderr and "pkgc config set token" in anonymous.stderr

        limited = pkgc({**env, "PKGC_TOKEN": empty}, "install", "hello", "--prefix", prefix)
        assert limited.returncode == 12, limited.stderr
        assert limited.stderr.count("\n") == 1 and "try again in" in limited.stderr, limited.stderr

        unknown = pkgc({**env, "PKGC_TOKEN": "pkgc_nobody"}, "install", "hello", "--prefix", prefix)
        assert unknown.returncode == 10 and "not known to this farm" in unknown.stderr
    assert farm.count_builds() == 0


def test_token_commands_reach_an_aws_farm_s_table(
    tmp_path: Path, moto_server: MotoServer, aws_env: dict[str, str]
) -> None:
    """An administrator makes the first token of a deployed farm with the farm's environment (PKGC_FARM_BACKEND=aws
    and the PKGC_AWS_* names): the secret's hash lands in the DynamoDB tokens table, and revoking it works there."""
    from pkgc.farm.adapters.aws import AwsClients
    from pkgc.farm.adapters.aws_tokens import DynamoTokenStore
    from tests.moto_server import make_aws_settings

    settings = make_aws_settings(moto_server)
    env = {**user_env(tmp_path), **moto_server.env(), **settings.to_env()}
    made = pkgc(env, "farm", "token", "create", "first-admin", "--admin")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    store = DynamoTokenStore(AwsClients(settings).dynamodb, settings.tokens_table)
    (stored,) = store.list_tokens()
    assert stored.name == "first-admin" and stored.role == "admin"
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest(), "only the hash is stored"
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").rglob("farm.db")), "no embedded farm"
    listed = pkgc(env, "farm", "token", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["tokens"][0]["name"] == "first-admin"
    assert pkgc(env, "farm", "token", "revoke", "first-admin").returncode == 0
    (revoked,) = store.list_tokens()
    assert revoked.revoked_at is not None
    no_table = pkgc({**env, "PKGC_AWS_TOKENS_TABLE": ""}, "farm", "token", "list")
    assert no_table.returncode != 0 and "PKGC_AWS_TOKENS_TABLE" in no_table.stderr
