"""`pkgc farm deploy`: put the AWS farm of infra/ into an account, and say where its API is.

infra/main.yaml is the one-template description of the farm (for `aws cloudformation package` + `deploy`). This module
creates the same children as stacks of their own, in dependency order, passing each child's outputs to the next as
parameters, because the nested form cannot be exercised offline (moto cannot resolve `!GetAtt Child.Outputs.X`). The
wiring is not written twice: `read_wiring` reads it from main.yaml, and the offline tests deploy the children through
the same functions, so main.yaml and this command cannot drift apart.

Nothing here talks to AWS itself: `DeployTarget` is what the deployment needs from a cloud, and its boto3
implementation lives in pkgc/farm/adapters/aws_deploy.py (the only place besides the farm's AWS adapters that
imports boto3).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pkgc.core.errors import PkgcError, UsageError
from pkgc.farm.aws_settings import AwsSettings

# The Lambda runtime of infra/api.yaml; vendored binary wheels must match it.
LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORM = "manylinux2014_x86_64"
# Extra runtime dependencies of the deployables that pkgc itself does not need everywhere.
LAMBDA_EXTRA_REQUIREMENTS = ("mangum>=0.17",)
WORKER_EXTRA_REQUIREMENTS = ("boto3>=1.34",)
WORKER_UNIT = "pkgc-worker.service"

# A stack name as CloudFormation accepts it (the children get "-<child>" appended, so leave room).
_STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,100}")
# S3 bucket names (the DNS-compatible rules), and the parameter values this command passes on.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PARAM_NAME = re.compile(r"[A-Za-z0-9]{1,255}")
_TEMPLATE_BODY_LIMIT = 51_200  # bytes of TemplateBody; larger templates go by TemplateURL


class DeployError(PkgcError):
    """The deployment could not be done: no credentials, no access, a stack that failed (with its reason)."""

    exit_code = 1
    code = "deploy_failed"


# -- templates --------------------------------------------------------------------------------------------------------


def infra_dir() -> Path:
    """The templates: shipped in the wheel as pkgc/_infra, or the checkout's infra/ directory."""
    installed = Path(__file__).resolve().parent.parent / "_infra"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent.parent / "infra"


def _cfn_loader() -> type[Any]:
    """A YAML loader that reads CloudFormation's short tags (`!Ref x`, `!GetAtt A.B`, `!Sub ...`) as the long form."""
    import yaml

    class Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no type information here
        pass

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "Condition":
            return {"Condition": value}
        if suffix == "GetAtt" and isinstance(value, str):
            resource, _, attribute = value.partition(".")
            return {"Fn::GetAtt": [resource, attribute]}
        return {f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", construct)
    return Loader


def load_template(path: Path) -> dict[str, Any]:
    """A template as a dict, intrinsic functions in their long form."""
    import yaml

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_cfn_loader())  # a SafeLoader: no arbitrary objects
    except (OSError, yaml.YAMLError) as exc:
        raise DeployError(f"cannot read template {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DeployError(f"template {path} is not a mapping")
    return data


# -- the wiring of main.yaml ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FromParameter:
    """A child parameter that is main.yaml's own parameter `name` (`!Ref name`), a list joined (`!Join`)."""

    name: str
    join: str | None = None


@dataclass(frozen=True)
class FromOutput:
    """A child parameter that is another child's output (`!GetAtt Child.Outputs.Name`)."""

    child: str
    output: str


@dataclass(frozen=True)
class Literal:
    value: str


Wire = FromParameter | FromOutput | Literal


@dataclass(frozen=True)
class ChildStack:
    """One `AWS::CloudFormation::Stack` of main.yaml: its logical id, template file and parameter wiring."""

    logical_id: str
    template: str
    parameters: dict[str, Wire]
    depends_on: frozenset[str]

    @property
    def short_name(self) -> str:
        return self.logical_id.lower()


def _wire(child: str, name: str, value: Any) -> Wire:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return Literal(str(value))
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref" and isinstance(argument, str):
            return FromParameter(argument)
        if function == "Fn::GetAtt" and isinstance(argument, list) and len(argument) == 2:
            resource, attribute = argument
            if isinstance(resource, str) and isinstance(attribute, str) and attribute.startswith("Outputs."):
                return FromOutput(resource, attribute.removeprefix("Outputs."))
        if function == "Fn::Join" and isinstance(argument, list) and len(argument) == 2:
            separator, joined = argument
            if isinstance(separator, str) and isinstance(joined, dict) and set(joined) == {"Ref"}:
                return FromParameter(joined["Ref"], join=separator)
    raise DeployError(f"main.yaml: {child} parameter {name}: unsupported wiring {value!r}")


def read_wiring(main: Path | None = None) -> list[ChildStack]:
    """The child stacks of main.yaml in an order that creates each after the children it takes outputs from."""
    main = main or infra_dir() / "main.yaml"
    template = load_template(main)
    children: dict[str, ChildStack] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::CloudFormation::Stack":
            continue
        properties = resource.get("Properties") or {}
        url = properties.get("TemplateURL")
        if not isinstance(url, str) or "/" in url or not url.endswith(".yaml"):
            raise DeployError(f"main.yaml: {logical_id} must name a template of infra/ by file name, not {url!r}")
        wires = {name: _wire(logical_id, name, value) for name, value in (properties.get("Parameters") or {}).items()}
        explicit = resource.get("DependsOn") or []
        depends = {w.child for w in wires.values() if isinstance(w, FromOutput)}
        depends |= {explicit} if isinstance(explicit, str) else set(explicit)
        children[logical_id] = ChildStack(logical_id, url, wires, frozenset(depends))
    ordered: list[ChildStack] = []
    placed: set[str] = set()
    while len(ordered) < len(children):
        ready = [c for c in children.values() if c.logical_id not in placed and c.depends_on <= placed]
        if not ready:
            raise DeployError(f"main.yaml: the children {sorted(set(children) - placed)} depend on each other")
        for child in ready:  # main.yaml's order among the children that are ready
            ordered.append(child)
            placed.add(child.logical_id)
    return ordered


def main_parameters(main: Path | None = None) -> dict[str, dict[str, Any]]:
    """main.yaml's parameters with their declarations (Type, Default, ...)."""
    template = load_template(main or infra_dir() / "main.yaml")
    return dict(template.get("Parameters") or {})


def child_parameters(
    child: ChildStack, top: Mapping[str, str], outputs: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The parameter values of `child`, given main.yaml's parameter values and the outputs of the children before."""
    values: dict[str, str] = {}
    for name, wire in child.parameters.items():
        if isinstance(wire, Literal):
            values[name] = wire.value
        elif isinstance(wire, FromParameter):
            if wire.name not in top:
                raise DeployError(f"main.yaml: {child.logical_id} needs parameter {wire.name}, which has no value")
            values[name] = top[wire.name]  # a list parameter's value is already its comma-joined form
        else:
            produced = outputs.get(wire.child)
            if produced is None or wire.output not in produced:
                raise DeployError(f"stack {wire.child} has no output {wire.output} for {child.logical_id}.{name}")
            values[name] = produced[wire.output]
    return values


def child_stack_name(stack: str, child: ChildStack) -> str:
    return f"{stack}-{child.short_name}"


# -- packages ---------------------------------------------------------------------------------------------------------


def _source_root() -> Path:
    return Path(__file__).resolve().parent.parent  # the pkgc package directory


def runtime_requirements() -> list[str]:
    """pkgc's own runtime dependencies: from the checkout's pyproject.toml, else from the installed metadata."""
    pyproject = _source_root().parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        return [str(r) for r in project.get("dependencies", [])]
    from importlib.metadata import requires

    return [r for r in requires("pkgc") or [] if "extra ==" not in r]


def _package_files() -> Iterable[tuple[Path, str]]:
    """(file, name in the zip) of the pkgc package and its bundled recipes. pkgc/worker is a link to the checkout's
    worker/ directory (see pyproject.toml), so links are followed, as the wheel's build does."""
    root = _source_root()
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        subdirectories[:] = sorted(d for d in subdirectories if d not in ("__pycache__", "_recipes", "_infra"))
        found.extend(Path(directory) / name for name in files if not name.endswith(".pyc"))
    for path in sorted(found):
        yield path, f"pkgc/{path.relative_to(root).as_posix()}"
    if not (root / "worker" / "__main__.py").is_file():
        raise DeployError(f"the worker package {root / 'worker'} is missing")
    from pkgc.recipes import bundled_recipe_dir

    for recipe in sorted(bundled_recipe_dir().glob("*.toml")):
        yield recipe, f"pkgc/_recipes/{recipe.name}"
        patches = recipe.with_suffix("")  # its patch files, recipes/NAME/FILE
        if patches.is_dir():
            for patch in sorted(p for p in patches.iterdir() if p.is_file() and not p.is_symlink()):
                yield patch, f"pkgc/_recipes/{patches.name}/{patch.name}"


def _write_zip(destination: Path, members: Iterable[tuple[Path, str]], extra: Mapping[str, bytes]) -> Path:
    """A zip with fixed timestamps and modes, so that the same content gives the same bytes (and S3 key)."""
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
        for name, data in extra.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return destination


def build_worker_package(destination: Path) -> Path:
    """The worker package: pkgc (pure Python), requirements.txt for the instance's pip, and the systemd unit."""
    requirements = "\n".join([*runtime_requirements(), *WORKER_EXTRA_REQUIREMENTS]) + "\n"
    unit = (infra_dir() / "worker" / WORKER_UNIT).read_bytes()
    return _write_zip(destination, _package_files(), {"requirements.txt": requirements.encode(), WORKER_UNIT: unit})


def build_lambda_package(destination: Path, dependencies: Path | None) -> Path:
    """The Lambda code: pkgc plus the contents of `dependencies` (a `pip install --target` directory) at the top."""
    members = list(_package_files())
    if dependencies is not None:
        for path in sorted(dependencies.rglob("*")):
            relative = path.relative_to(dependencies)
            if path.is_file() and "__pycache__" not in relative.parts and relative.parts[0] != "pkgc":
                members.append((path, relative.as_posix()))
    return _write_zip(destination, members, {})


def vendor_lambda_dependencies(target: Path, run: Callable[..., Any] = subprocess.run) -> Path:
    """`pip install --target` pkgc's runtime dependencies as Lambda's Python runs them (binary wheels only)."""
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target), "--implementation", "cp", "--python-version", LAMBDA_PYTHON,
        "--platform", LAMBDA_PLATFORM, "--only-binary=:all:",
        *runtime_requirements(), *LAMBDA_EXTRA_REQUIREMENTS,
    ]  # fmt: skip
    result = run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr or result.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise DeployError(
            f"pip could not fetch the Lambda's dependencies: {last[0]}",
            hint="prepare them yourself and pass --lambda-deps DIR (see docs/deploy-aws.md)",
        )
    return target


def content_key(prefix: str, path: Path, suffix: str) -> str:
    """An S3 key named after the content, so a changed package is a changed key (and CloudFormation updates)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    return f"{prefix}-{digest}{suffix}"


def package_key(stack: str, kind: str, path: Path) -> str:
    """Where `pkgc farm deploy` of `stack` uploads a package (kind "lambda" or "worker") in the deployment bucket:
    the key the stacks' LambdaCodeKey / WorkerPackageKey parameters name (the worker install rehearsal uses it too)."""
    return content_key(f"pkgc/{stack}/{kind}", path, ".zip")


# -- the deployment ---------------------------------------------------------------------------------------------------


class DeployTarget(Protocol):
    """What a deployment needs from a cloud account (pkgc.farm.adapters.aws_deploy.AwsDeployTarget)."""

    region: str

    def check_bucket(self, bucket: str) -> None: ...

    def upload(self, bucket: str, key: str, data: bytes) -> str:
        """Store `data` under `key` and return the object's URL (for a TemplateURL)."""
        ...

    def default_network(self) -> tuple[str, list[str]]:
        """The default VPC and its subnets (for the workers when none are given)."""
        ...

    def deploy_stack(
        self, name: str, template_body: str | None, template_url: str, parameters: Mapping[str, str]
    ) -> dict[str, str]:
        """Create or update the stack, wait until it is complete, and return its outputs; DeployError on failure."""
        ...


@dataclass
class DeployRequest:
    stack: str
    bucket: str
    platform: str | None = None
    code_zip: Path | None = None
    lambda_deps: Path | None = None
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass
class DeployResult:
    api_url: str
    stacks: dict[str, str]  # logical id -> stack name
    outputs: dict[str, dict[str, str]]  # logical id -> outputs
    main_template_url: str
    parameters: dict[str, dict[str, str]] = field(default_factory=dict)  # logical id -> the values it was given


def validate_request(request: DeployRequest) -> None:
    """Refuse names and values before anything is uploaded or created."""
    if not _STACK_NAME.fullmatch(request.stack):
        raise UsageError(f"invalid stack name {request.stack!r}: letters, digits and '-', starting with a letter")
    if not _BUCKET_NAME.fullmatch(request.bucket) or ".." in request.bucket:
        raise UsageError(f"invalid bucket name {request.bucket!r}")
    declared = main_parameters()
    for name, value in request.parameters.items():
        if not _PARAM_NAME.fullmatch(name) or name not in declared:
            raise UsageError(f"unknown parameter {name!r}; main.yaml declares: {', '.join(sorted(declared))}")
        if any(ord(c) < 0x20 for c in value):
            raise UsageError(f"parameter {name} holds a control character")
    for path, what in ((request.code_zip, "--code-zip"), (request.lambda_deps, "--lambda-deps")):
        if path is not None and not path.exists():
            raise UsageError(f"{what} {path} does not exist")


def _top_parameters(request: DeployRequest, target: DeployTarget, keys: Mapping[str, str]) -> dict[str, str]:
    """main.yaml's parameter values: the defaults, then what the deployment found or built, then the user's."""
    declared = main_parameters()
    values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    values.update(ArtifactBucket=request.bucket, **keys)
    if request.platform:
        values["Platform"] = request.platform
    values.update(request.parameters)
    if "VpcId" not in values or "SubnetIds" not in values:
        vpc, subnets = target.default_network()
        values.setdefault("VpcId", vpc)
        values.setdefault("SubnetIds", ",".join(subnets))
    pattern = declared.get("Platform", {}).get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, values.get("Platform", "")):
        raise UsageError(f"invalid platform {values.get('Platform')!r} (allowed: {pattern})")
    missing = sorted(name for name in declared if name not in values)
    if missing:
        raise UsageError(f"no value for {', '.join(missing)}; pass --param NAME=VALUE")
    return values


def deploy(
    request: DeployRequest, target: DeployTarget, progress: Callable[[str], None] = lambda _line: None
) -> DeployResult:
    """Upload the packages and templates, then create or update each child stack in order; return the API URL."""
    validate_request(request)
    target.check_bucket(request.bucket)
    prefix = f"pkgc/{request.stack}"
    with tempfile.TemporaryDirectory(prefix="pkgc-deploy-") as scratch:
        work = Path(scratch)
        if request.code_zip is not None:
            lambda_zip = request.code_zip
        else:
            deps = request.lambda_deps
            if deps is None:
                progress("fetching the Lambda's dependencies with pip")
                deps = vendor_lambda_dependencies(work / "deps")
            lambda_zip = build_lambda_package(work / "lambda.zip", deps)
        worker_zip = build_worker_package(work / "worker.zip")
        keys = {
            "LambdaCodeKey": package_key(request.stack, "lambda", lambda_zip),
            "WorkerPackageKey": package_key(request.stack, "worker", worker_zip),
        }
        for key, path in ((keys["LambdaCodeKey"], lambda_zip), (keys["WorkerPackageKey"], worker_zip)):
            progress(f"uploading s3://{request.bucket}/{key}")
            target.upload(request.bucket, key, path.read_bytes())
    top = _top_parameters(request, target, keys)
    children = read_wiring()
    urls: dict[str, str] = {}
    bodies: dict[str, str] = {}
    for child in children:
        body = (infra_dir() / child.template).read_text(encoding="utf-8")
        digest = hashlib.sha256(body.encode()).hexdigest()[:20]
        urls[child.logical_id] = target.upload(
            request.bucket, f"{prefix}/templates/{child.short_name}-{digest}.yaml", body.encode()
        )
        bodies[child.logical_id] = body
    main_url = target.upload(request.bucket, f"{prefix}/templates/main.yaml", packaged_main(urls).encode())
    outputs: dict[str, dict[str, str]] = {}
    stacks: dict[str, str] = {}
    given: dict[str, dict[str, str]] = {}
    for child in children:
        name = child_stack_name(request.stack, child)
        progress(f"deploying stack {name}")
        body = bodies[child.logical_id]
        given[child.logical_id] = child_parameters(child, top, outputs)
        outputs[child.logical_id] = target.deploy_stack(
            name,
            body if len(body.encode()) <= _TEMPLATE_BODY_LIMIT else None,
            urls[child.logical_id],
            given[child.logical_id],
        )
        stacks[child.logical_id] = name
    api_url = api_url_of(outputs)
    return DeployResult(api_url=api_url, stacks=stacks, outputs=outputs, main_template_url=main_url, parameters=given)


def _api_child() -> str:
    """The logical id of the child whose output is main.yaml's ApiUrl: the stack of the API Lambda."""
    template = load_template(infra_dir() / "main.yaml")
    wire = _wire("Outputs", "ApiUrl", template["Outputs"]["ApiUrl"]["Value"])
    if not isinstance(wire, FromOutput):
        raise DeployError("main.yaml's ApiUrl is not a child stack's output")
    return wire.child


def api_settings(result: DeployResult, region: str, endpoint_url: str | None = None) -> AwsSettings:
    """The AWS settings the API Lambda runs with, from the values its stack was given: the same names
    infra/api.yaml puts into the function's environment (PKGC_AWS_*), so what the deploy writes is what it reads."""
    child = _api_child()
    values = result.parameters.get(child, {})
    needed = ("BuildsTable", "CatalogTable", "TokensTable", "BlobBucket", "Platform", "QueueUrl")
    missing = [name for name in needed if not values.get(name)]
    if missing:
        raise DeployError(f"the {child} stack was given no {', '.join(missing)}; cannot reach the farm's catalog")
    return AwsSettings(
        builds_table=values["BuildsTable"],
        catalog_table=values["CatalogTable"],
        tokens_table=values["TokensTable"],
        bucket=values["BlobBucket"],
        queues={values["Platform"]: values["QueueUrl"]},
        cdn_url=values.get("CdnUrl") or None,
        topic_arn=values.get("TopicArn") or None,
        region=region,
        endpoint_url=endpoint_url,
    )


def publish_starter_recipes(settings: AwsSettings) -> tuple[list[str], list[tuple[str, str]]]:
    """Publish the starter recipes shipped with pkgc into the deployed farm's catalog (its DynamoDB table and S3
    snapshot), through the composition root with the deployer's credentials; (names published, (file, error)
    skipped). A new farm then serves packages at once, and its first admin token can publish more over the API."""
    from pkgc.core.recipe import bundle_recipe_text
    from pkgc.farm.bootstrap import FarmConfig, farm_service
    from pkgc.farm.service import recipe_error_reason
    from pkgc.recipes import bundled_recipe_dir

    # Each with its patch files (recipes/NAME/FILE), which the catalog stores inside the recipe's text.
    texts = [(path.name, bundle_recipe_text(path)) for path in sorted(bundled_recipe_dir().glob("*.toml"))]
    outcome = farm_service(FarmConfig(backend="aws", aws=settings)).publish_batch(texts)
    return (
        [recipe.name for _, recipe in outcome.published],
        [(source, recipe_error_reason(exc)) for source, exc in outcome.skipped],
    )


def api_url_of(outputs: Mapping[str, Mapping[str, str]]) -> str:
    """main.yaml's ApiUrl output, found the way main.yaml finds it (`!GetAtt Child.Outputs.ApiUrl`)."""
    template = load_template(infra_dir() / "main.yaml")
    wire = _wire("Outputs", "ApiUrl", template["Outputs"]["ApiUrl"]["Value"])
    if not isinstance(wire, FromOutput) or wire.output not in outputs.get(wire.child, {}):
        raise DeployError("the stacks were deployed but none gave the API URL")
    return outputs[wire.child][wire.output]


def packaged_main(urls: Mapping[str, str]) -> str:
    """main.yaml with each child's TemplateURL replaced by its uploaded copy, for `aws cloudformation create-stack
    --template-url` (the one-template path). Rewritten in the text, so its comments and tags stay as written."""
    text = (infra_dir() / "main.yaml").read_text(encoding="utf-8")
    for child in read_wiring():
        replacement = json.dumps(urls[child.logical_id])
        text, count = re.subn(
            rf"^(\s+TemplateURL:\s*){re.escape(child.template)}\s*$",
            lambda m, replacement=replacement: m.group(1) + replacement,  # type: ignore[misc]
            text,
            flags=re.MULTILINE,
        )
        if count != 1:
            raise DeployError(f"main.yaml names {child.template} {count} times")
    return text
