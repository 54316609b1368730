"""The AWS adapters on the resources the templates make (not the look-alikes `create_resources` makes for the
contract suite): the key schemas, the GSI, the redrive policy and the outputs' names agree with the adapters."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pkgc.core.protocol import BuildStatus
from pkgc.farm.adapters.aws import SqsJobQueue, aws_ports
from pkgc.farm.aws_settings import AwsSettings
from pkgc.farm.ports import BuildRecord
from tests.infra.conftest import REGION, Harness


def test_adapters_work_on_the_deployed_stacks(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in harness.moto.env().items():
        monkeypatch.setenv(name, value)
    data, queue, storage, notifications = (harness.outputs[k] for k in ("Data", "Queue", "Storage", "Notifications"))
    platform = harness.top["Platform"]
    env = {  # what api.yaml and workers.yaml hand to the Lambda and the workers
        **harness.moto.env(),
        "PKGC_AWS_BUILDS_TABLE": data["BuildsTable"],
        "PKGC_AWS_CATALOG_TABLE": data["CatalogTable"],
        "PKGC_AWS_TOKENS_TABLE": data["TokensTable"],
        "PKGC_AWS_BUCKET": storage["BlobBucket"],
        "PKGC_AWS_QUEUES": json.dumps({platform: queue["QueueUrl"]}),
        "PKGC_AWS_CDN_URL": storage["CdnUrl"],  # empty: the harness deploys without the CDN
        "PKGC_AWS_TOPIC_ARN": notifications["TopicArn"],
        "AWS_REGION": REGION,
    }
    settings = AwsSettings.from_env(env)
    ports = aws_ports(settings)

    name = f"pkg{uuid.uuid4().hex[:8]}"
    for index in range(3):
        key = f"{index}{uuid.uuid4().hex}{uuid.uuid4().hex}"[:64]
        assert ports.builds.create_if_absent(
            BuildRecord(key=key, name=name, version="1", options={}, spec={}, created_at=float(index), platform=platform)
        )[0]
    newest = ports.builds.builds_of(name)
    assert [r.created_at for r in newest] == [2.0, 1.0, 0.0], "the template's GSI by-name orders by created_at"
    lease = ports.builds.acquire_lease(newest[0].key, "i-0123", now=1.0, ttl=60.0)
    assert lease is not None
    log = tmp_path / "build.log"
    log.write_text("ok\n")
    log_name = ports.blobs.put_content("logs", log)
    assert ports.builds.finish(lease, 2.0, status=BuildStatus.READY, artifact=log_name, sha256="0" * 64, size=3, log=log_name)
    assert ports.blobs.url_for(log_name).startswith(harness.moto.endpoint), "no CDN: a presigned URL"

    jobs = ports.queues.for_platform(platform)
    assert isinstance(jobs, SqsJobQueue)
    assert jobs.dead_letter_url() == queue["DeadLetterQueueUrl"], "the DLQ named by the template's redrive policy"
    jobs.send(newest[0].key)
    job = jobs.receive(visibility_timeout=30, wait=2)
    assert job is not None and job.body == newest[0].key
    jobs.ack(job)

    ports.catalog.put_recipe(name, "text", "summary", "1")
    assert ports.catalog.get_recipe_text(name) == "text"
    ports.notifier.build_finished(newest[0])
