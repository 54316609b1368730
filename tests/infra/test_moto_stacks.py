"""Each child template deployed on moto by the harness (tests/infra/conftest.py), with main.yaml's wiring, and what
moto's CloudFormation skips (scaling policies, the alarm, CloudFront, the bucket policy) created through the
services' own APIs with the templates' own properties."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
from typing import Any

from tests.infra.cfn import SKIPPED_BY_MOTO, cloudfront_api, resolve, template
from tests.infra.conftest import Harness

# moto creates these but reports no physical id for them; the API test below finds them through API Gateway.
NO_PHYSICAL_ID_ON_MOTO = {"AWS::ApiGateway::Method", "AWS::ApiGateway::Deployment", "AWS::Lambda::Permission"}


def _created(harness: Harness, logical_id: str) -> dict[str, dict[str, Any]]:
    """The resources the stack really holds. moto lists a skipped resource with an empty logical id and no type
    worth counting: those are left out here, and compared with the template below."""
    cfn = harness.moto.client("cloudformation")
    resources = cfn.list_stack_resources(StackName=harness.stack_name(logical_id))["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r for r in resources if r["LogicalResourceId"]}


def test_every_child_stack_is_complete_with_exactly_the_resources_moto_supports(harness: Harness) -> None:
    cfn = harness.moto.client("cloudformation")
    conditions = {"HasCdn": harness.top["EnableCdn"] == "true"}
    skipped_everywhere: set[str] = set()
    for child in harness.children:
        stack = cfn.describe_stacks(StackName=harness.stack_name(child.logical_id))["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        resources = template(child.template)["Resources"]
        wanted = {
            name
            for name, resource in resources.items()
            if conditions.get(resource.get("Condition", ""), True)  # a false condition: not on AWS either
        }
        skipped = {name for name in wanted if resources[name]["Type"] in SKIPPED_BY_MOTO}
        created = _created(harness, child.logical_id)
        assert set(created) == wanted - skipped, child.logical_id
        for name, summary in created.items():
            assert summary["ResourceType"] == resources[name]["Type"]
            assert summary["PhysicalResourceId"] or summary["ResourceType"] in NO_PHYSICAL_ID_ON_MOTO, name
        skipped_everywhere |= {resources[name]["Type"] for name in skipped}
    # What the other tests below create through the APIs instead (CloudFront is off in the harness: see there).
    assert skipped_everywhere == {
        "AWS::AutoScaling::ScalingPolicy",
        "AWS::CloudWatch::Alarm",
        "AWS::S3::BucketPolicy",
    }


def test_tables_have_the_design_keys_and_index(harness: Harness) -> None:
    dynamodb = harness.moto.client("dynamodb")
    out = harness.outputs["Data"]
    builds = dynamodb.describe_table(TableName=out["BuildsTable"])["Table"]
    assert builds["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]
    assert builds["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    (index,) = builds["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-name"
    assert index["KeySchema"] == [
        {"AttributeName": "name", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    types = {a["AttributeName"]: a["AttributeType"] for a in builds["AttributeDefinitions"]}
    assert types == {"key": "S", "name": "S", "created_at": "N"}
    for table, key in ((out["CatalogTable"], "name"), (out["TokensTable"], "token_hash")):
        described = dynamodb.describe_table(TableName=table)["Table"]
        assert described["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]


def test_queue_redrives_to_its_dead_letter_queue_after_five_receives(harness: Harness) -> None:
    sqs = harness.moto.client("sqs")
    out = harness.outputs["Queue"]
    attributes = sqs.get_queue_attributes(QueueUrl=out["QueueUrl"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": out["DeadLetterQueueArn"], "maxReceiveCount": 5}
    assert attributes["VisibilityTimeout"] == "300"
    assert attributes["ReceiveMessageWaitTimeSeconds"] == "20"


def test_api_lambda_gets_the_wired_environment(harness: Harness) -> None:
    lambda_ = harness.moto.client("lambda")
    data, queue, storage = harness.outputs["Data"], harness.outputs["Queue"], harness.outputs["Storage"]
    expected = {
        "PKGC_FARM_BACKEND": "aws",
        "PKGC_AWS_BUILDS_TABLE": data["BuildsTable"],
        "PKGC_AWS_CATALOG_TABLE": data["CatalogTable"],
        "PKGC_AWS_TOKENS_TABLE": data["TokensTable"],
        "PKGC_AWS_BUCKET": storage["BlobBucket"],
        "PKGC_AWS_CDN_URL": storage["CdnUrl"],
        "PKGC_AWS_TOPIC_ARN": harness.outputs["Notifications"]["TopicArn"],
    }
    for output, handler in (("ApiFunctionName", "api_handler"), ("MetricsFunctionName", "metrics_handler")):
        function = lambda_.get_function_configuration(FunctionName=harness.outputs["Api"][output])
        assert function["Handler"] == f"pkgc.farm.aws_lambda.{handler}"
        env = function["Environment"]["Variables"]
        queues = json.loads(env.pop("PKGC_AWS_QUEUES"))
        assert queues == {harness.top["Platform"]: queue["QueueUrl"]}
        assert env == expected


def test_api_url_names_the_rest_api_and_the_schedule_runs_the_metrics_lambda(harness: Harness) -> None:
    api_id = harness.outputs["Api"]["ApiUrl"].removeprefix("https://").split(".")[0]
    apigateway = harness.moto.client("apigateway")
    api = apigateway.get_rest_api(restApiId=api_id)
    assert api["name"] == f"{harness.stack_name('Api')}-api"
    paths = {r["path"] for r in apigateway.get_resources(restApiId=api_id)["items"]}
    assert paths == {"/", "/{proxy+}"}
    for resource in apigateway.get_resources(restApiId=api_id)["items"]:
        method = apigateway.get_method(restApiId=api_id, resourceId=resource["id"], httpMethod="ANY")
        assert method["methodIntegration"]["type"] == "AWS_PROXY"
        assert harness.outputs["Api"]["ApiFunctionName"] in method["methodIntegration"]["uri"]
    assert [s["stageName"] for s in apigateway.get_stages(restApiId=api_id)["item"]] == ["farm"]
    assert harness.outputs["Api"]["ApiUrl"] == f"https://{api_id}.execute-api.us-east-1.amazonaws.com/farm"
    events = harness.moto.client("events")
    (rule,) = [r for r in events.list_rules()["Rules"] if r["Name"].startswith(harness.stack_name("Api"))]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"].endswith(f":function:{harness.outputs['Api']['MetricsFunctionName']}")


def test_workers_group_rests_at_zero_with_spot_above_an_on_demand_base(harness: Harness) -> None:
    autoscaling = harness.moto.client("autoscaling")
    name = harness.outputs["Workers"]["AutoScalingGroupName"]
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    assert (group["MinSize"], group["DesiredCapacity"], group["MaxSize"]) == (0, 0, 4)
    policy = group["MixedInstancesPolicy"]
    distribution = policy["InstancesDistribution"]
    assert distribution["OnDemandBaseCapacity"] == 0
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0
    assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"
    overrides = [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]]
    assert overrides == harness.top["WorkerInstanceTypes"].split(",")
    # (CapacityRebalance and MetricsCollection: moto's CloudFormation does not carry them over; cfn-lint checks them)


def test_launch_template_user_data_is_valid_bash_with_the_wired_values(harness: Harness) -> None:
    ec2 = harness.moto.client("ec2")
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=harness.outputs["Workers"]["LaunchTemplateId"])
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["ImageId"] == harness.image  # resolved from the SSM parameter
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    script = base64.b64decode(data["UserData"]).decode()
    assert "${" not in script.replace("${PKGC", "")  # every CloudFormation reference was substituted
    queue_url = harness.outputs["Queue"]["QueueUrl"]
    assert f"""PKGC_AWS_QUEUES='{{"{harness.top["Platform"]}": "{queue_url}"}}'""" in script
    assert f"PKGC_AWS_BUILDS_TABLE={harness.outputs['Data']['BuildsTable']}\n" in script
    assert f"PKGC_PLATFORM={harness.top['Platform']}\n" in script
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr


def test_instance_role_may_protect_only_its_own_group(harness: Harness) -> None:
    iam = harness.moto.client("iam")
    role = harness.outputs["Workers"]["InstanceRoleArn"].rsplit("/", 1)[1]
    (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):  # moto 5.2 returns the document of a template's role as Python's repr of it
        document = ast.literal_eval(document)
    statements = {s["Sid"]: s for s in document["Statement"]}
    protection = statements["ScaleInProtectionOfItsGroup"]
    group = harness.outputs["Workers"]["AutoScalingGroupName"]
    assert protection["Action"] == "autoscaling:SetInstanceProtection"
    assert protection["Resource"].endswith(f":autoScalingGroupName/{group}")
    assert all(s["Resource"] != "*" for s in statements.values() if s["Sid"] != "FindItsGroup")


def _workers_refs(harness: Harness) -> dict[str, Any]:
    params = harness.parameters["Workers"]
    defaults = {k: v.get("Default") for k, v in template("workers.yaml")["Parameters"].items()}
    return {**defaults, **params, "Group": harness.outputs["Workers"]["AutoScalingGroupName"]}


def test_backlog_target_tracking_policy_is_accepted_by_the_autoscaling_api(harness: Harness) -> None:
    """moto's CloudFormation skips AWS::AutoScaling::ScalingPolicy: put the template's own policy through the API."""
    autoscaling = harness.moto.client("autoscaling")
    resources = template("workers.yaml")["Resources"]
    refs = _workers_refs(harness)
    group = refs["Group"]
    tracking = resolve(resources["BacklogTracking"]["Properties"], refs)
    assert tracking["AutoScalingGroupName"] == group
    config = tracking["TargetTrackingConfiguration"]
    config["TargetValue"] = float(config["TargetValue"])
    autoscaling.put_scaling_policy(
        AutoScalingGroupName=group,
        PolicyName="backlog-tracking",
        PolicyType="TargetTrackingScaling",
        EstimatedInstanceWarmup=tracking["EstimatedInstanceWarmup"],
        TargetTrackingConfiguration=config,
    )
    step = resolve(resources["ScaleFromZero"]["Properties"], refs)
    autoscaling.put_scaling_policy(
        AutoScalingGroupName=group,
        PolicyName="scale-from-zero",
        PolicyType="StepScaling",
        AdjustmentType=step["AdjustmentType"],
        MetricAggregationType=step["MetricAggregationType"],
        StepAdjustments=step["StepAdjustments"],
    )
    policies = {
        p["PolicyName"]: p for p in autoscaling.describe_policies(AutoScalingGroupName=group)["ScalingPolicies"]
    }
    step_arn = policies["scale-from-zero"]["PolicyARN"]
    metrics = policies["backlog-tracking"]["TargetTrackingConfiguration"]["CustomizedMetricSpecification"]["Metrics"]
    by_id = {m["Id"]: m for m in metrics}
    assert by_id["perinstance"]["Expression"] == "IF(instances > 0, backlog / instances, backlog)"
    assert by_id["backlog"]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "Platform", "Value": harness.top["Platform"]}
    ]
    assert by_id["instances"]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "AutoScalingGroupName", "Value": group}
    ]
    assert [m["Id"] for m in metrics if m.get("ReturnData", True)] == ["perinstance"]
    assert policies["scale-from-zero"]["StepAdjustments"][0]["ScalingAdjustment"] == 1

    # The alarm that triggers the step policy (CloudWatch::Alarm is skipped too), on the policy's real ARN.
    alarm = resolve(resources["JobsWaitingWithoutWorkers"]["Properties"], {**refs, "ScaleFromZero": step_arn})
    cloudwatch = harness.moto.client("cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName="jobs-waiting-without-workers", **alarm)
    (stored,) = cloudwatch.describe_alarms(AlarmNames=["jobs-waiting-without-workers"])["MetricAlarms"]
    assert stored["AlarmActions"] == [step_arn]
    assert {m["Id"]: m.get("Expression") for m in stored["Metrics"]}["idlewithjobs"] == (
        "IF(FILL(instances, 0) == 0 AND backlog > 0, 1, 0)"
    )


def test_cdn_distribution_and_bucket_policy_through_their_apis(harness: Harness) -> None:
    """The harness deploys storage.yaml with EnableCdn=false (moto's CloudFormation has no CloudFront); here the
    template's own OAC, DistributionConfig and bucket policy (with the CDN statement) go through the APIs."""
    resources = template("storage.yaml")["Resources"]
    bucket = harness.outputs["Storage"]["BlobBucket"]
    cloudfront = harness.moto.client("cloudfront")
    refs: dict[str, Any] = {
        "AWS::StackName": harness.stack_name("Storage"),
        "AWS::Partition": "aws",
        "AWS::AccountId": "123456789012",
        "CdnPriceClass": "PriceClass_100",
        "HasCdn": True,
        "BlobBucket": bucket,
        "BlobBucket.Arn": harness.outputs["Storage"]["BlobBucketArn"],
        "BlobBucket.RegionalDomainName": f"{bucket}.s3.us-east-1.amazonaws.com",
    }
    oac_config = resolve(resources["OriginAccessControl"]["Properties"]["OriginAccessControlConfig"], refs)
    oac = cloudfront.create_origin_access_control(OriginAccessControlConfig=oac_config)["OriginAccessControl"]
    refs["OriginAccessControl.Id"] = oac["Id"]
    config = resolve(resources["Distribution"]["Properties"]["DistributionConfig"], refs)
    created = cloudfront.create_distribution(DistributionConfig=cloudfront_api(config, "pkgc-infra-test"))
    distribution = created["Distribution"]
    stored = distribution["DistributionConfig"]
    (origin,) = stored["Origins"]["Items"]
    assert origin["DomainName"] == refs["BlobBucket.RegionalDomainName"]
    # (moto keeps no OriginAccessControlId on the origin; the request carried it, see cloudfront_api)
    assert cloudfront_api(config, "x")["Origins"]["Items"][0]["OriginAccessControlId"] == oac["Id"]
    assert stored["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "https-only"
    assert distribution["DomainName"].endswith(".cloudfront.net")

    refs["Distribution"] = distribution["Id"]
    policy = resolve(resources["BlobBucketPolicy"]["Properties"], refs)
    s3 = harness.moto.client("s3")
    s3.put_bucket_policy(Bucket=policy["Bucket"], Policy=json.dumps(policy["PolicyDocument"]))
    statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    cdn = next(s for s in statements if s["Sid"] == "CloudFrontReadsContentAddressedBlobs")
    assert cdn["Condition"]["StringEquals"]["AWS:SourceArn"].endswith(f":distribution/{distribution['Id']}")
    assert sorted(cdn["Resource"]) == [f"arn:aws:s3:::{bucket}/artifacts/*", f"arn:aws:s3:::{bucket}/logs/*"]


def test_metrics_role_may_drain_the_dead_letter_queue_and_fail_its_builds(harness: Harness) -> None:
    """What metrics_handler calls (pkgc/farm/housekeeping.py): the queue's depth and redrive policy, receive and
    delete on the DLQ only, the builds table's lease and fenced finish, the waiters' jobs, the notification, and
    PutMetricData fenced to the pkgc namespace."""
    function = harness.moto.client("lambda").get_function_configuration(
        FunctionName=harness.outputs["Api"]["MetricsFunctionName"]
    )
    role = function["Role"].rsplit("/", 1)[1]
    iam = harness.moto.client("iam")
    (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):  # moto 5.2 returns the document of a template's role as Python's repr of it
        document = ast.literal_eval(document)
    queue, data = harness.outputs["Queue"], harness.outputs["Data"]

    def allowed(action: str, resource: str) -> bool:
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if statement["Effect"] == "Allow" and action in actions and resource in resources:
                return True
        return False

    dlq, source = queue["DeadLetterQueueArn"], queue["QueueArn"]
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert allowed(action, dlq), action
    assert not allowed("sqs:ReceiveMessage", source) and not allowed("sqs:DeleteMessage", source), "not the jobs"
    assert allowed("sqs:GetQueueAttributes", source) and allowed("sqs:SendMessage", source)
    for action in ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"):
        assert allowed(action, data["BuildsTableArn"]), action
    assert allowed("sns:Publish", harness.outputs["Notifications"]["TopicArn"])
    assert allowed("cloudwatch:PutMetricData", "*")


def test_api_role_may_publish_recipes_into_the_catalog(harness: Harness) -> None:
    """What POST /v1/recipes does (FarmService.publish_batch over the AWS adapters): read the caller's token, put
    each recipe into the catalog table, scan its names for the snapshot, and write (and read) catalog/snapshot.json
    in the blob bucket; and nothing else of the bucket is writable (blobs are content-addressed, written by
    workers only)."""
    from fnmatch import fnmatchcase

    from pkgc.farm.adapters.aws import CATALOG_SNAPSHOT

    function = harness.moto.client("lambda").get_function_configuration(
        FunctionName=harness.outputs["Api"]["ApiFunctionName"]
    )
    role = function["Role"].rsplit("/", 1)[1]
    iam = harness.moto.client("iam")
    (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):  # moto 5.2 returns the document of a template's role as Python's repr of it
        document = ast.literal_eval(document)

    def allowed(action: str, resource: str) -> bool:
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if (
                statement["Effect"] == "Allow"
                and action in actions
                and any(fnmatchcase(resource, r) for r in resources)
            ):
                return True
        return False

    data, storage = harness.outputs["Data"], harness.outputs["Storage"]
    for action in ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Scan"):
        assert allowed(action, data["CatalogTableArn"]), action
    assert allowed("dynamodb:GetItem", data["TokensTableArn"]), "the admin token is looked up"
    snapshot = f"{storage['BlobBucketArn']}/{CATALOG_SNAPSHOT}"
    assert allowed("s3:PutObject", snapshot) and allowed("s3:GetObject", snapshot)
    assert not allowed("s3:PutObject", f"{storage['BlobBucketArn']}/artifacts/sha256/00/x.tar.zst")
    assert not allowed("dynamodb:DeleteItem", data["BuildsTableArn"])
