"""The templates on their own: cfn-lint clean, main.yaml's wiring consistent with its children, the packages that
`pkgc farm deploy` uploads, and the worker's systemd unit and user data."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pkgc.core.errors import UsageError
from pkgc.farm.deploy import (
    WORKER_UNIT,
    DeployRequest,
    FromOutput,
    FromParameter,
    build_lambda_package,
    build_worker_package,
    main_parameters,
    packaged_main,
    read_wiring,
    validate_request,
)
from tests.infra.cfn import INFRA, template

# DESIGN-8 "AWS names": the environment every farm process on AWS gets (the CDN and topic may be empty).
FARM_ENV = {
    "PKGC_FARM_BACKEND",
    "PKGC_AWS_BUILDS_TABLE",
    "PKGC_AWS_CATALOG_TABLE",
    "PKGC_AWS_TOKENS_TABLE",
    "PKGC_AWS_BUCKET",
    "PKGC_AWS_QUEUES",
    "PKGC_AWS_CDN_URL",
    "PKGC_AWS_TOPIC_ARN",
}
CFN_LINT = [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())"]


def test_cfn_lint_is_clean_on_every_template() -> None:
    templates = sorted(p.name for p in INFRA.glob("*.yaml"))
    assert templates == [
        "api.yaml", "data.yaml", "main.yaml", "notifications.yaml", "queue.yaml", "storage.yaml", "workers.yaml",
    ]  # fmt: skip
    result = subprocess.run([*CFN_LINT], cwd=INFRA, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_cfn_lint_catches_a_parameter_main_yaml_passes_that_a_child_lacks(tmp_path: Path) -> None:
    """The lint is not vacuous: E3043 opens the child templates by their relative TemplateURL."""
    shutil.copytree(INFRA, tmp_path / "infra")
    main = tmp_path / "infra" / "main.yaml"
    text = main.read_text()
    main.write_text(text.replace("        Platform: !Ref Platform\n", "        Platfrom: !Ref Platform\n", 1))
    result = subprocess.run(
        [*CFN_LINT, "main.yaml"], cwd=tmp_path / "infra", capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2, result.stdout
    assert "E3043" in result.stdout and "Platfrom" in result.stdout


def test_main_yaml_wiring_matches_every_child() -> None:
    """Every parameter main.yaml passes is declared by the child, every child parameter without a default gets one,
    every `!GetAtt Child.Outputs.X` names an output the child declares, every `!Ref` a parameter of main.yaml."""
    declared_main = main_parameters()
    children = read_wiring()
    by_id = {c.logical_id: c for c in children}
    assert [c.logical_id for c in children][-2:] == ["Api", "Workers"]  # after everything they take outputs from
    for child in children:
        child_template = template(child.template)
        params = child_template.get("Parameters") or {}
        assert set(child.parameters) <= set(params), child.logical_id
        required = {name for name, spec in params.items() if "Default" not in spec}
        assert required <= set(child.parameters), f"{child.logical_id} lacks {required - set(child.parameters)}"
        for name, wire in child.parameters.items():
            if isinstance(wire, FromOutput):
                producer = template(by_id[wire.child].template)
                assert wire.output in producer["Outputs"], f"{child.logical_id}.{name}"
                assert children.index(by_id[wire.child]) < children.index(child)
            elif isinstance(wire, FromParameter):
                assert wire.name in declared_main
                is_list = str(declared_main[wire.name]["Type"]).startswith(("List<", "CommaDelimitedList"))
                assert (wire.join is not None) == is_list, f"{child.logical_id}.{name}: a list is passed joined"
    for output in template("main.yaml")["Outputs"].values():
        resource, attribute = output["Value"]["Fn::GetAtt"]
        assert attribute.removeprefix("Outputs.") in template(by_id[resource].template)["Outputs"]


def test_lambda_functions_get_the_design_environment_and_handlers() -> None:
    functions = {
        name: resource["Properties"]
        for name, resource in template("api.yaml")["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    assert {p["Handler"] for p in functions.values()} == {
        "pkgc.farm.aws_lambda.api_handler",
        "pkgc.farm.aws_lambda.metrics_handler",
    }
    for properties in functions.values():
        env = properties["Environment"]["Variables"]
        assert set(env) == FARM_ENV
        assert env["PKGC_FARM_BACKEND"] == "aws"
        assert env["PKGC_AWS_QUEUES"] == {"Fn::Sub": '{"${Platform}": "${QueueUrl}"}'}


def test_packaged_main_points_each_child_at_its_upload() -> None:
    urls = {c.logical_id: f"https://b.s3.us-east-1.amazonaws.com/t/{c.short_name}.yaml" for c in read_wiring()}
    text = packaged_main(urls)
    for url in urls.values():
        assert f'TemplateURL: "{url}"' in text
    assert "TemplateURL: data.yaml" not in text


def test_worker_package_holds_pkgc_its_requirements_and_the_unit(tmp_path: Path) -> None:
    package = build_worker_package(tmp_path / "worker.zip")
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        requirements = archive.read("requirements.txt").decode().splitlines()
        unit = archive.read(WORKER_UNIT)
    assert {"pkgc/__init__.py", "pkgc/worker/__main__.py", "pkgc/farm/ports.py"} <= names
    assert any(n.startswith("pkgc/_recipes/") and n.endswith(".toml") for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert any(r.startswith("boto3") for r in requirements) and any(r.startswith("fastapi") for r in requirements)
    assert unit == (INFRA / "worker" / WORKER_UNIT).read_bytes()
    assert build_worker_package(tmp_path / "again.zip").read_bytes() == package.read_bytes()  # same key next time


def test_lambda_package_puts_the_dependencies_at_the_top(tmp_path: Path) -> None:
    deps = tmp_path / "deps"
    (deps / "mangum").mkdir(parents=True)
    (deps / "mangum" / "__init__.py").write_text("")
    with zipfile.ZipFile(build_lambda_package(tmp_path / "lambda.zip", deps)) as archive:
        names = set(archive.namelist())
    assert {"mangum/__init__.py", "pkgc/farm/deploy.py"} <= names


def test_the_unit_runs_the_worker_as_the_design_names_it() -> None:
    unit = (INFRA / "worker" / WORKER_UNIT).read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.split("=", 1)[1].split() == [
        "/opt/pkgc/venv/bin/python", "-m", "pkgc.worker", "--backend", "aws",
        "--platform", "${PKGC_PLATFORM}", "--id", "${PKGC_INSTANCE_ID}", "--workdir", "/var/lib/pkgc",
    ]  # fmt: skip
    assert "EnvironmentFile=/etc/pkgc-worker.env" in unit
    assert "KillSignal=SIGTERM" in unit
    assert "KillMode=mixed" in unit, "SIGTERM to the worker alone: it stops its build and hands the job back"


def test_user_data_writes_every_variable_the_unit_and_the_farm_need() -> None:
    user_data = template("workers.yaml")["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"][
        "Fn::Base64"
    ]["Fn::Sub"]
    env_block = user_data.split("<<ENV\n", 1)[1].split("\nENV\n", 1)[0]
    names = {line.split("=", 1)[0].strip() for line in env_block.splitlines()}
    assert FARM_ENV | {"PKGC_PLATFORM", "PKGC_INSTANCE_ID", "AWS_REGION"} <= names
    assert f"/opt/pkgc/lib/{WORKER_UNIT} /etc/systemd/system/{WORKER_UNIT}" in user_data
    assert f"systemctl enable --now {WORKER_UNIT}" in user_data
    base64.b64encode(user_data.encode())  # (CloudFormation's Fn::Base64; the deployed copy is checked on moto)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (DeployRequest(stack="9lives", bucket="b-ok"), "invalid stack name"),
        (DeployRequest(stack="ok", bucket="Bad_Bucket"), "invalid bucket name"),
        (DeployRequest(stack="ok", bucket="b-ok", parameters={"Nope": "1"}), "unknown parameter 'Nope'"),
        (DeployRequest(stack="ok", bucket="b-ok", parameters={"Platform": "a\nb"}), "control character"),
        (DeployRequest(stack="ok", bucket="b-ok", code_zip=Path("/nonexistent.zip")), "--code-zip"),
    ],
)
def test_bad_requests_are_refused_before_any_call(request_: DeployRequest, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate_request(request_)
