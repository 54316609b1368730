"""CloudWatch adapter of the `BacklogMetrics` port: the metric the workers' autoscaling tracks.

`infra/workers.yaml` scales on namespace `pkgc`, metric `Backlog`, dimension `Platform` (one worker builds one job at a
time, so the target is backlog per instance). One `PutMetricData` call carries every platform's value. boto3 is
imported here and in the other `aws*.py` adapters only; errors become `FarmUnavailable` at this boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3

from pkgc.farm.adapters.aws import _aws_call, _client_config
from pkgc.farm.aws_settings import AwsSettings

NAMESPACE = "pkgc"
BACKLOG_METRIC = "Backlog"
PLATFORM_DIMENSION = "Platform"
MAX_DATUMS_PER_CALL = 1000  # PutMetricData's limit


class CloudWatchBacklogMetrics:
    """Publishes `pkgc/Backlog{Platform=P}`: jobs waiting or being built on P's queue (a Count)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, settings: AwsSettings) -> CloudWatchBacklogMetrics:
        session = boto3.session.Session(region_name=settings.region)
        with _aws_call("creating the cloudwatch client"):
            client = session.client(
                "cloudwatch", endpoint_url=settings.endpoint_url, config=_client_config("cloudwatch")
            )
        return cls(client)

    def publish_backlog(self, backlog: Mapping[str, int]) -> None:
        datums = [
            {
                "MetricName": BACKLOG_METRIC,
                "Dimensions": [{"Name": PLATFORM_DIMENSION, "Value": platform}],
                "Value": float(max(0, count)),
                "Unit": "Count",
            }
            for platform, count in sorted(backlog.items())
        ]
        for start in range(0, len(datums), MAX_DATUMS_PER_CALL):
            with _aws_call(f"CloudWatch PutMetricData {NAMESPACE}/{BACKLOG_METRIC}"):
                self._client.put_metric_data(Namespace=NAMESPACE, MetricData=datums[start : start + MAX_DATUMS_PER_CALL])
