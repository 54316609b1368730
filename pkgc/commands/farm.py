"""`pkgc farm up|status|stop|reset` and `pkgc farm token create|list|revoke`: the embedded farm on this machine;
`pkgc farm deploy`: the farm on AWS; `pkgc farm publish`: recipes into the configured farm's catalog;
`pkgc farm catalog update`: the Debian catalog of the embedded farm or (PKGC_FARM_BACKEND=aws) the AWS farm."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pkgc.cli import console

if TYPE_CHECKING:
    import httpx

app = typer.Typer(help="Run the embedded build farm on this machine, or deploy the farm to AWS.", no_args_is_help=True)


@app.command("up")
def up(workers: int = typer.Option(0, help="Worker processes (default: one per core).")) -> None:
    """Start the embedded farm in the background (if it is not running) and print its URL."""
    from pkgc.client.embedded import ensure_running, farm_home, read_state
    from pkgc.client.settings import load_settings

    url = ensure_running(farm_home(), workers or None, idle_timeout=load_settings().farm_idle_timeout)
    console().print(f"embedded farm running at {url}")
    _print_skipped_recipes(read_state(farm_home()) or {})


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Say whether the embedded farm runs, where, with which workers, whether they keep failing, and where its
    Debian catalog is (loaded, loading, failed and why)."""
    from pkgc.client.embedded import farm_home, health, read_state
    from pkgc.farm.debian_state import describe, read_state as read_debian_state

    home = farm_home()
    state = read_state(home)
    debian = read_debian_state(home)
    answer = None
    if state and "url" in state:
        with _loopback_client() as http:
            answer = health(str(state["url"]), http)
    running = state is not None and answer is not None
    failing = running and answer is not None and answer.get("workers") == "failing"
    if as_json:
        shown = state if running and state else {}
        document = {"running": running, "home": str(home), **shown, "workers_failing": failing}
        print(json.dumps({**document, "debian_catalog": debian}))
        return
    if not running or state is None:
        console().print(f"embedded farm is not running (home {home})")
        raise typer.Exit(4)  # the exit code of "the farm cannot be reached", so scripts can test for it
    line = f"embedded farm running at {state['url']}, pid {state['pid']}, workers {len(state.get('workers') or {})}"
    if failing:
        line += f"; workers failing: they keep exiting at start, see {home}/farm.log"
    console().print(line)
    console().print(describe(debian), markup=False, highlight=False)
    _print_skipped_recipes(state)


def _loopback_client() -> httpx.Client:
    """An HTTP client for the embedded farm, which is always on loopback: plain http, so no certificate store is
    loaded (a tenth of this command's time), and no proxy from the environment (as `http_client` does)."""
    import httpx

    return httpx.Client(transport=httpx.HTTPTransport(verify=False), trust_env=False)


def _print_skipped_recipes(state: dict[str, Any]) -> None:
    """Recipes the farm could not publish at start, each with its one-line error, so the user can fix them."""
    for recipe in state.get("skipped_recipes") or []:
        console().print(f"skipped recipe {recipe['file']}: {recipe['error']}", markup=False, highlight=False)


@app.command("stop")
def stop() -> None:
    """Stop the embedded farm and its workers (whichever pkgc version started it)."""
    from pkgc.client.embedded import farm_home, stop as stop_farm

    stopped = stop_farm(farm_home())
    console().print("embedded farm stopped" if stopped else "embedded farm was not running")


@app.command("reset")
def reset(yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Start the farm's database afresh (after damage), keeping the artifacts: those that prove their build
    by their manifests are adopted again, so installing them needs no new compile."""
    from pkgc.client.embedded import farm_home
    from pkgc.farm.reset import ensure_stopped, reset_farm

    home = farm_home()
    ensure_stopped(home)  # before asking: a running farm is refused whatever the answer
    if not yes:
        typer.confirm(
            f"Reset the embedded farm's database in {home}? Queued builds and failure records are forgotten; "
            "built artifacts are kept and adopted again",
            default=False,
            abort=True,
        )
    report = reset_farm(home)
    out = console()
    for moved in report.moved_aside:
        out.print(f"old database kept as {moved} (delete it when you no longer need it)", markup=False)
    for recipe in report.skipped_recipes:
        out.print(f"skipped recipe {recipe.file}: {recipe.error}", markup=False)
    for name, reason in report.left_out:
        out.print(f"left out {name}: {reason}", markup=False)
    count = len(report.adopted)
    adopted = ", ".join(f"{a.name} {a.version}" for a in report.adopted)
    out.print(
        f"farm database reset; re-adopted {count} build{'' if count == 1 else 's'}"
        + (f": {adopted}" if adopted else ""),
        markup=False,
    )


catalog_app = typer.Typer(
    help="The Debian source catalog of the farm (the embedded farm, or the AWS farm with PKGC_FARM_BACKEND=aws): "
    "every source package apt's configuration reaches, each with a recipe generated on demand. The embedded farm "
    "loads it by itself in the background when it starts without one (output in <farm home>/debian/update.log; "
    "PKGC_DEBIAN_CATALOG_AUTOLOAD=0 turns that off).",
    no_args_is_help=True,
)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("update")
def catalog_update(
    ctx: typer.Context,
    from_file: Path | None = typer.Option(
        None, "--from", help="Load this Sources index (decompressed) instead of fetching it through apt."
    ),
    backend: str | None = typer.Option(
        None,
        "--backend",
        help="local (the embedded farm) or aws (the PKGC_AWS_* variables and your AWS credentials); "
        "default: PKGC_FARM_BACKEND, else local.",
    ),
) -> None:
    """Fetch Debian's Sources index through apt (deb-src entries derived from apt's deb entries; apt checks the
    signed InRelease) and make it the farm's Debian catalog: 'pkgc search' lists every source package.

    The embedded farm keeps it in its home, and runs the same update in the background when it starts without a
    catalog: run this to load it now, to retry after a failed load (`pkgc search` says when one failed), or to
    refresh it. An AWS farm keeps it in its bucket (catalog/debian/: an immutable blob and the pointer to it),
    written with your AWS credentials; its API uses it within a minute.
    Separate from `pkgc install`, so that the quick start never waits for this download."""
    import tempfile

    from pkgc.client.embedded import farm_home
    from pkgc.core.errors import UsageError
    from pkgc.farm.bootstrap import BACKENDS, FarmConfig
    from pkgc.farm.catalog_autoload import record_update, refresh_snapshot
    from pkgc.farm.catalog_update import CatalogUpdate, update_catalog
    from pkgc.farm.debian_catalog import fetch_sources_text, load_index_text

    if backend is not None and backend.strip().lower() not in BACKENDS:
        raise UsageError(f"--backend: unknown farm backend {backend[:40]!r}", hint="use local or aws")
    config = FarmConfig.from_env(home=farm_home(), backend=backend)
    text: str | None = None
    if from_file is not None:
        try:
            text = from_file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot read {from_file}: {exc.strerror}") from None
    if config.backend == "local":
        home = config.paths.home

        def load() -> tuple[int, int]:
            source = text if text is not None else fetch_sources_text(home / "debian" / "apt")
            return load_index_text(home, source)

        # Under the update lock the farm's own background load takes too (one at a time), its end recorded as the
        # catalog's state (loaded, or failed with why) for `pkgc search` to tell.
        stored, skipped = record_update(home, load, after=lambda: refresh_snapshot(home))
        update = CatalogUpdate(stored, skipped)
    else:
        if text is None:  # apt's lists for one upload: nothing of them is kept
            with tempfile.TemporaryDirectory(prefix="pkgc-debian-apt-") as state:
                text = fetch_sources_text(Path(state))
        update = update_catalog(config, text)
    _forget_catalog_freshness(ctx.obj)
    where = f"; the AWS farm uses {update.blob} within a minute" if update.blob else ""
    console().print(
        f"Debian catalog: {update.stored} source packages ({update.skipped} skipped){where}; 'pkgc search' lists them",
        markup=False,
    )


token_app = typer.Typer(
    help="API tokens of the embedded farm: who may start builds (asked for when the farm runs with "
    "PKGC_FARM_REQUIRE_TOKEN=1; an AWS farm always asks).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="A name for the token (who or what uses it)."),
    admin: bool = typer.Option(False, "--admin", help="May also retry failed builds and publish recipes."),
    builds_per_hour: int = typer.Option(20, "--builds-per-hour", min=0, max=100_000, help="New builds per hour."),
    in_flight: int = typer.Option(10, "--in-flight", min=0, max=1000, help="Builds started and not finished."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Make a token and print its secret: it is shown only now (the farm keeps only its sha256)."""
    from pkgc.client.embedded import farm_home
    from pkgc.farm.token_admin import create_token, farm_token_stores, token_summary

    tokens, _ = farm_token_stores(farm_home())
    created = create_token(tokens, name, admin=admin, builds_per_hour=builds_per_hour, in_flight=in_flight)
    if as_json:
        print(json.dumps({**token_summary(created.record), "token": created.secret}))
        return
    record = created.record
    print(
        f"token '{record.name}' ({record.role}, {record.builds_per_hour} builds per hour, {record.max_in_flight} in "
        "flight) created; its secret follows, shown only now:",
        file=sys.stderr,
    )
    print(created.secret)  # alone on stdout, so that a script can capture it


@token_app.command("list")
def token_list(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """The tokens, revoked ones too, with their quotas and use (never their secrets)."""
    from pkgc.client.embedded import farm_home
    from pkgc.farm.token_admin import farm_token_stores, token_summary

    tokens, builds = farm_token_stores(farm_home())
    summaries = [token_summary(record, builds) for record in tokens.list_tokens()]
    if as_json:
        print(json.dumps({"tokens": summaries}))
        return
    out = console()
    if not summaries:
        out.print("no tokens (make one with 'pkgc farm token create NAME')", markup=False)
    for item in summaries:
        state = f"revoked {_when(item['revoked_at'])}" if item["revoked_at"] is not None else "valid"
        out.print(
            f"{item['name']} ({item['id']}) {item['role']}: {item['builds_this_hour']}/{item['builds_per_hour']} "
            f"builds this hour, {item['in_flight']}/{item['max_in_flight']} in flight, {item['builds_started']} "
            f"started; created {_when(item['created_at'])}, {state}",
            markup=False,
            highlight=False,
        )


@token_app.command("revoke")
def token_revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token: the farm refuses it from its next request on."""
    from pkgc.client.embedded import farm_home
    from pkgc.farm.token_admin import farm_token_stores, revoke_token

    tokens, _ = farm_token_stores(farm_home())
    for record in revoke_token(tokens, name):
        console().print(f"revoked token '{record.name}' ({record.token_hash[:12]})", markup=False)


def _when(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


@app.command("publish")
def publish(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(None, help="Recipe files (NAME.toml) to publish.", show_default=False),
    starter: bool = typer.Option(False, "--starter", help="Also publish the starter recipes shipped with pkgc."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Publish recipes into the configured farm's catalog (needs an admin token: 'pkgc config set token TOKEN').

    A recipe the farm refuses is skipped and named, the others are published (exit 1 when any was skipped). The
    embedded farm loads the recipes of PKGC_RECIPE_PATH when it starts and takes none over its API unless it runs
    with PKGC_FARM_REQUIRE_TOKEN=1.
    """
    from pkgc.cli import AppContext
    from pkgc.client.publish import publish_recipes, read_recipe_files, starter_recipe_paths
    from pkgc.core.wire_schema import encode

    app_context: AppContext = ctx.obj
    paths = [*(starter_recipe_paths() if starter else []), *(files or [])]
    recipes = read_recipe_files(paths)  # every local problem before anything is sent
    report = publish_recipes(app_context.farm(), recipes)
    _forget_catalog_freshness(app_context)
    if as_json:
        print(
            json.dumps(
                {
                    "published": [encode(item) for item in report.published],
                    "skipped": [encode(item) for item in report.skipped],
                }
            )
        )
    else:
        out = console()
        for item in report.skipped:
            out.print(f"skipped recipe {item.file}: {item.error}", markup=False, highlight=False)
        names = ", ".join(f"{item.name} {item.version}" for item in report.published)
        count = len(report.published)
        out.print(f"published {count} recipe{'' if count == 1 else 's'}: {names}", markup=False, highlight=False)
    if report.skipped:
        raise typer.Exit(1)


def _forget_catalog_freshness(app_context: Any) -> None:
    """Make the next `pkgc search` fetch the farm's catalog again, so that it lists what was just published."""
    cache = app_context.catalog()
    source = app_context.settings.farm
    if cache.synced_at(source) is not None:
        cache.touch(source, 0.0)


@app.command("deploy")
def deploy(
    stack: str = typer.Option(..., "--stack", help="Name of the farm's stacks (each child is <stack>-<child>)."),
    bucket: str = typer.Option(..., "--bucket", help="An existing S3 bucket for the code and the templates."),
    region: str | None = typer.Option(None, "--region", help="AWS region (default: AWS_REGION or your profile's)."),
    platform: str | None = typer.Option(None, "--platform", help="The build platform the workers build for."),
    code_zip: Path | None = typer.Option(None, "--code-zip", help="Use this Lambda code zip as it is."),
    lambda_deps: Path | None = typer.Option(
        None, "--lambda-deps", help="A `pip install --target` directory of the Lambda's dependencies (else pip runs)."
    ),
    param: list[str] = typer.Option([], "--param", help="NAME=VALUE for a parameter of infra/main.yaml (repeat)."),
    no_recipes: bool = typer.Option(
        False, "--no-recipes", help="Do not publish the starter recipes into the farm's catalog."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Deploy the AWS farm (infra/) with your AWS credentials and print its API URL (for `pkgc config set farm`).

    Then publish the starter recipes shipped with pkgc into its catalog (unless --no-recipes); more recipes go in
    with `pkgc farm publish` and an admin token.

    Honours AWS_ENDPOINT_URL, AWS_PROFILE and the other variables of the AWS CLI. See docs/deploy-aws.md.
    """
    from pkgc.core.errors import UsageError
    from pkgc.farm.deploy import DeployRequest, deploy as deploy_farm

    parameters: dict[str, str] = {}
    for item in param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--param takes NAME=VALUE, not {item!r}")
        parameters[name] = value
    request = DeployRequest(
        stack=stack,
        bucket=bucket,
        platform=platform,
        code_zip=code_zip,
        lambda_deps=lambda_deps,
        parameters=parameters,
    )
    try:
        import yaml  # noqa: F401  (the templates are YAML)

        from pkgc.farm.adapters.aws_deploy import AwsDeployTarget
    except ImportError as exc:
        raise UsageError(
            f"deploying needs boto3 and PyYAML ({exc.name} is missing)", hint="pip install 'pkgc[aws]'"
        ) from None
    from pkgc.farm.deploy import validate_request

    validate_request(request)  # bad names and values are refused before any AWS call
    progress = console(stderr=True)
    target = AwsDeployTarget(region)
    result = deploy_farm(request, target, progress=lambda line: progress.print(line, markup=False))
    published: list[str] = []
    skipped: list[tuple[str, str]] = []
    if not no_recipes:
        import os

        from pkgc.farm.deploy import api_settings, publish_starter_recipes

        progress.print("publishing the starter recipes into the farm's catalog", markup=False)
        from pkgc.core.errors import PkgcError
        from pkgc.farm.deploy import DeployError

        try:
            settings = api_settings(result, target.region, os.environ.get("AWS_ENDPOINT_URL") or None)
            published, skipped = publish_starter_recipes(settings)
        except PkgcError as exc:
            raise DeployError(
                f"the farm is deployed at {result.api_url}, but publishing the starter recipes failed: {exc.message}",
                hint="publish them with 'pkgc farm publish --starter' and an admin token",
            ) from None
        for file, error in skipped:
            progress.print(f"skipped recipe {file}: {error}", markup=False, highlight=False)
    if as_json:
        answer: dict[str, Any] = {
            "api_url": result.api_url,
            "stacks": result.stacks,
            "template": result.main_template_url,
        }
        if not no_recipes:
            answer["recipes"] = {"published": published, "skipped": [{"file": f, "error": e} for f, e in skipped]}
        print(json.dumps(answer))
        return
    print(result.api_url)
    if not no_recipes:
        count = len(published)
        progress.print(
            f"published {count} starter recipe{'' if count == 1 else 's'}: {', '.join(published)}", markup=False
        )
    progress.print(f"point pkgc at it: pkgc config set farm {result.api_url}", markup=False)
