"""The names of one AWS farm's resources, read from the environment: no boto3 here, so the composition root can
parse and check the configuration (and fail at start with one line) without importing the AWS SDK.

What CloudFormation's outputs hand to the Lambda functions and the workers (infra/*.yaml), and what
`pkgc.farm.adapters.aws.aws_ports` opens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pkgc.core.errors import UsageError

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit
DEFAULT_PRESIGN_SECONDS = 3600


@dataclass(frozen=True)
class AwsSettings:
    """Names of the AWS resources one farm uses (what CloudFormation's outputs hand to the Lambda and the workers)."""

    builds_table: str
    catalog_table: str
    bucket: str
    queues: Mapping[str, str] = field(default_factory=dict)  # build platform -> SQS queue URL
    tokens_table: str = ""
    cdn_url: str | None = None
    topic_arn: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    presign_seconds: int = DEFAULT_PRESIGN_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AwsSettings:
        """Read PKGC_AWS_* (see docs/architecture.md) plus AWS_REGION/AWS_DEFAULT_REGION and AWS_ENDPOINT_URL.

        A missing or malformed value is a one-line UsageError naming the variable: a deployment misconfigured
        this way should fail at start, not on its first request.
        """
        env = os.environ if environ is None else environ

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise UsageError(f"{name} is not set: the AWS farm needs it", hint="see docs/deploy-aws.md")
            return value

        raw_queues = env.get("PKGC_AWS_QUEUES", "").strip() or "{}"
        try:
            queues = json.loads(raw_queues)
        except json.JSONDecodeError as exc:
            raise UsageError(f"PKGC_AWS_QUEUES is not JSON: {exc.msg}") from None
        if not isinstance(queues, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) and _is_http_url(v) for k, v in queues.items()
        ):
            raise UsageError("PKGC_AWS_QUEUES must be a JSON object {platform: queue URL}")
        cdn = env.get("PKGC_AWS_CDN_URL", "").strip() or None
        if cdn is not None and not _is_http_url(cdn):
            raise UsageError(f"PKGC_AWS_CDN_URL is not an http(s) URL without query: {cdn[:100]!r}")
        presign_text = env.get("PKGC_AWS_PRESIGN_SECONDS", "").strip() or str(DEFAULT_PRESIGN_SECONDS)
        if not presign_text.isdigit() or not 1 <= int(presign_text) <= MAX_PRESIGN_SECONDS:
            raise UsageError(f"PKGC_AWS_PRESIGN_SECONDS must be 1..{MAX_PRESIGN_SECONDS} seconds")
        region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
        if not region:
            raise UsageError("AWS_REGION (or AWS_DEFAULT_REGION) is not set: the AWS farm needs it")
        return cls(
            builds_table=required("PKGC_AWS_BUILDS_TABLE"),
            catalog_table=required("PKGC_AWS_CATALOG_TABLE"),
            tokens_table=env.get("PKGC_AWS_TOKENS_TABLE", "").strip(),
            bucket=required("PKGC_AWS_BUCKET"),
            queues=dict(queues),
            cdn_url=cdn,
            topic_arn=env.get("PKGC_AWS_TOPIC_ARN", "").strip() or None,
            region=region,
            endpoint_url=env.get("AWS_ENDPOINT_URL", "").strip() or None,
            presign_seconds=int(presign_text),
        )

    def to_env(self) -> dict[str, str]:
        """The environment `from_env` reads back: what a test or `farm deploy` hands to another process."""
        env = {
            "PKGC_FARM_BACKEND": "aws",
            "PKGC_AWS_BUILDS_TABLE": self.builds_table,
            "PKGC_AWS_CATALOG_TABLE": self.catalog_table,
            "PKGC_AWS_TOKENS_TABLE": self.tokens_table,
            "PKGC_AWS_BUCKET": self.bucket,
            "PKGC_AWS_QUEUES": json.dumps(dict(self.queues), sort_keys=True),
            "PKGC_AWS_PRESIGN_SECONDS": str(self.presign_seconds),
        }
        for name, value in (
            ("PKGC_AWS_CDN_URL", self.cdn_url),
            ("PKGC_AWS_TOPIC_ARN", self.topic_arn),
            ("AWS_REGION", self.region),
            ("AWS_DEFAULT_REGION", self.region),
            ("AWS_ENDPOINT_URL", self.endpoint_url),
        ):
            if value:
                env[name] = value
        return env


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.query and not parts.fragment
