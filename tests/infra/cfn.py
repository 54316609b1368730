"""Template helpers for the infra tests: resolve a resource's properties as CloudFormation would, and turn
CloudFront's CloudFormation shape into its API shape (moto's CloudFormation skips these resources; their APIs don't)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pkgc.farm.deploy import load_template

INFRA = Path(__file__).resolve().parents[2] / "infra"

# Resource types moto 5.2's CloudFormation skips with a warning (see docs/deploy-aws.md, "Testing offline"); the
# stacks' resource lists must show exactly the other resources, so a skipped one is never counted as deployed.
SKIPPED_BY_MOTO = frozenset(
    {
        "AWS::AutoScaling::ScalingPolicy",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudFront::Distribution",
        "AWS::CloudFront::OriginAccessControl",
        "AWS::S3::BucketPolicy",
    }
)


def template(name: str) -> dict[str, Any]:
    return load_template(INFRA / name)


def resolve(value: Any, refs: Mapping[str, Any]) -> Any:
    """Evaluate Ref, Fn::Sub (strings and ${A.B}), Fn::GetAtt, Fn::If (on a `refs` entry named after the condition),
    Fn::Select and Fn::Join against `refs`; fail on anything else, so that a test never sends an unresolved form."""
    if isinstance(value, list):
        return [v for v in (resolve(item, refs) for item in value) if v is not _NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, argument),) = value.items()
        if key == "Ref":
            return _NO_VALUE if argument == "AWS::NoValue" else refs[argument]
        if key == "Fn::GetAtt":
            return refs[".".join(argument)]
        if key == "Fn::Sub":
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(refs[m.group(1)]), argument)
        if key == "Fn::If":
            condition, yes, no = argument
            return resolve(yes if refs[condition] else no, refs)
        if key == "Fn::Select":
            return resolve(argument[1], refs)[int(argument[0])]
        if key == "Fn::Join":
            return argument[0].join(resolve(argument[1], refs))
        if key.startswith("Fn::"):
            raise AssertionError(f"cannot resolve {key} in a test")
    return {k: v for k, v in ((k, resolve(v, refs)) for k, v in value.items()) if v is not _NO_VALUE}


_NO_VALUE = object()

# CloudFormation's names for CloudFront's API fields where they differ.
_CLOUDFRONT_RENAMES = {"IPV6Enabled": "IsIPV6Enabled"}


def cloudfront_api(config: Mapping[str, Any], caller_reference: str) -> dict[str, Any]:
    """A DistributionConfig as CloudFormation takes it, in CloudFront API form: every list becomes
    {"Quantity", "Items"}, CachedMethods moves inside AllowedMethods, and renamed fields get their API names."""

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return {"Quantity": len(value), "Items": [convert(v) for v in value]}
        if isinstance(value, dict):
            out = {_CLOUDFRONT_RENAMES.get(k, k): convert(v) for k, v in value.items() if k != "CachedMethods"}
            if "CachedMethods" in value and "AllowedMethods" in out:
                out["AllowedMethods"]["CachedMethods"] = convert(value["CachedMethods"])
            return out
        return value

    api = convert(dict(config))
    api["CallerReference"] = caller_reference
    api.setdefault("Comment", "")
    return api
