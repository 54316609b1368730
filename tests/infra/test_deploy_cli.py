"""`pkgc farm deploy` as a user runs it (a real CLI process) against the session's moto server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from pkgc.recipes import bundled_recipe_dir
from tests.conftest import subprocess_env
from tests.infra.conftest import IMAGE_PARAMETER, Moto, small_zip, worker_image


def _pkgc(moto: Moto, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = subprocess_env({"HOME": str(tmp_path), "NO_COLOR": "1", **moto.env(), **env})
    return subprocess.run(
        [sys.executable, "-m", "pkgc", "farm", "deploy", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_deploy_creates_every_child_stack_and_prints_the_api_url(moto: Moto, tmp_path: Path) -> None:
    moto.client("s3").create_bucket(Bucket="pkgc-cli-deploy")
    worker_image(moto)
    code = tmp_path / "lambda.zip"
    code.write_bytes(small_zip())
    args = [
        "--stack", "clifarm", "--bucket", "pkgc-cli-deploy", "--region", "us-east-1",
        "--platform", "linux-aarch64-glibc-2.36", "--code-zip", str(code),
        "--param", f"WorkerImageId={IMAGE_PARAMETER}", "--param", "EnableCdn=false",
    ]  # fmt: skip
    result = _pkgc(moto, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert re.fullmatch(r"https://[a-z0-9]+\.execute-api\.us-east-1\.amazonaws\.com/farm", url), result.stdout
    assert f"pkgc config set farm {url}" in result.stderr

    cfn = moto.client("cloudformation")
    names = ["data", "queue", "storage", "notifications", "api", "workers"]
    for name in names:
        stack = cfn.describe_stacks(StackName=f"clifarm-{name}")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", name
    api = cfn.describe_stacks(StackName="clifarm-api")["Stacks"][0]
    assert {o["OutputKey"]: o["OutputValue"] for o in api["Outputs"]}["ApiUrl"] == url
    params = {p["ParameterKey"]: p["ParameterValue"] for p in api["Parameters"]}
    assert params["Platform"] == "linux-aarch64-glibc-2.36"
    assert params["LambdaCodeKey"].startswith("pkgc/clifarm/lambda-")

    s3 = moto.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="pkgc-cli-deploy")["Contents"]}
    assert params["LambdaCodeKey"] in keys
    assert any(k.startswith("pkgc/clifarm/worker-") for k in keys)
    assert "pkgc/clifarm/templates/main.yaml" in keys
    packaged = s3.get_object(Bucket="pkgc-cli-deploy", Key="pkgc/clifarm/templates/main.yaml")["Body"].read()
    assert b"TemplateURL: data.yaml" not in packaged and b"/pkgc-cli-deploy/pkgc/clifarm/templates/" in packaged

    # The starter recipes are in the new farm's catalog: the table the API Lambda reads, and its S3 snapshot.
    starter = sorted(p.stem for p in bundled_recipe_dir().glob("*.toml"))
    assert f"published {len(starter)} starter recipes: {', '.join(starter)}" in result.stderr
    data = {
        o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="clifarm-data")["Stacks"][0]["Outputs"]
    }
    storage = cfn.describe_stacks(StackName="clifarm-storage")["Stacks"][0]["Outputs"]
    blob_bucket = {o["OutputKey"]: o["OutputValue"] for o in storage}["BlobBucket"]
    dynamodb = moto.client("dynamodb")
    rows = dynamodb.scan(TableName=data["CatalogTable"])["Items"]
    assert sorted(row["name"]["S"] for row in rows) == starter
    snapshot = json.loads(s3.get_object(Bucket=blob_bucket, Key="catalog/snapshot.json")["Body"].read())
    assert sorted(p["name"] for p in snapshot["packages"]) == starter

    # Again with nothing changed: the stacks are updated in place (or left alone) and the same URL comes back;
    # with --no-recipes the catalog is left as it is (a recipe removed since stays removed).
    dynamodb.delete_item(TableName=data["CatalogTable"], Key={"name": {"S": "hello"}})
    again = _pkgc(moto, tmp_path, *args, "--no-recipes")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == url
    assert "starter recipe" not in again.stderr
    assert "hello" not in {row["name"]["S"] for row in dynamodb.scan(TableName=data["CatalogTable"])["Items"]}


def test_a_missing_bucket_is_one_line_and_exit_3(moto: Moto, tmp_path: Path) -> None:
    result = _pkgc(moto, tmp_path, "--stack", "nobucket", "--bucket", "pkgc-no-such-bucket", "--code-zip", __file__)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "error: bucket pkgc-no-such-bucket does not exist "
        "(create it first: aws s3 mb s3://pkgc-no-such-bucket --region us-east-1)"
    ]
    assert result.stdout == ""


def test_no_credentials_is_one_line(moto: Moto, tmp_path: Path) -> None:
    result = _pkgc(
        moto,
        tmp_path,
        "--stack",
        "nocreds",
        "--bucket",
        "pkgc-cli-deploy",
        AWS_ACCESS_KEY_ID="",
        AWS_SECRET_ACCESS_KEY="",
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: no AWS credentials found")


def test_a_failing_stack_is_one_line_naming_it(moto: Moto, tmp_path: Path) -> None:
    """An image parameter that does not exist: the workers' stack fails, after the others were created."""
    moto.client("s3").create_bucket(Bucket="pkgc-cli-failing")
    code = tmp_path / "lambda.zip"
    code.write_bytes(small_zip())
    result = _pkgc(
        moto, tmp_path, "--stack", "failing", "--bucket", "pkgc-cli-failing", "--code-zip", str(code),
        "--param", "WorkerImageId=/pkgc/test/no-such-image", "--param", "EnableCdn=false",
    )  # fmt: skip
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "failing-workers" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_parameter_is_a_usage_error(moto: Moto, tmp_path: Path) -> None:
    result = _pkgc(moto, tmp_path, "--stack", "x", "--bucket", "pkgc-cli-deploy", "--param", "NoSuchThing=1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown parameter 'NoSuchThing'")
