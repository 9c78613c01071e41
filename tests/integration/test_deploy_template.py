"""deploy/template.yaml: linted as SAM and as the CloudFormation it expands to, validated by the SAM
CLI, and created as a stack in moto's CloudFormation, where the real handler and the API's reads
run against the stack's table with every DynamoDB action they make checked against their roles.

moto's CloudFormation skips alarms and API Gateway v2 resources and ignores some properties
(point-in-time recovery, architectures, logging config): those are checked on the expanded template.
"""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_SAMPLE
from tests.sam_template import SAM_VENV, TEMPLATE, cfn_lint, expand, read
from tests.servers.dynamodb_local import REGION, DynamoDBServer
from tests.streams import lambda_event
from user_limits import aws_lambda
from user_limits.cli.check_config import warnings

BUCKET = "user-limits-artifacts"
SECRET = "s" * 32
# The sample drifts twice: tests/unit/test_shared_sample.py says why.
EXPECTED_COUNTS = {"applied": 9, "skipped": 0, "ignored": 6, "parked": 2, "deadLettered": 0, "drifted": 2}

PROJECTOR_TABLE_ACTIONS = {
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
}
API_TABLE_ACTIONS = {"dynamodb:BatchGetItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query"}
STREAM_READ_ACTIONS = {
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
}
# What the stack must create, and what moto's CloudFormation does not model (it skips them).
ALARMS = {
    "IteratorAgeAlarm": ("AWS/Lambda", "IteratorAge"),
    "ProjectorErrorsAlarm": ("AWS/Lambda", "Errors"),
    "ApiErrorsAlarm": ("AWS/Lambda", "Errors"),
    "FailedBatchesAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    "DeadLetteredAlarm": ("UserLimits", "deadLettered"),
    "DriftedAlarm": ("UserLimits", "drifted"),
    "ParkedAgeAlarm": ("UserLimits", "parkedOldestAgeMs"),
}
NOT_IN_MOTO = {*ALARMS, "HttpApi", "HttpApiApiGatewayDefaultStage"}


@pytest.fixture(scope="module")
def expanded() -> dict[str, Any]:
    return expand(read(), bucket=BUCKET)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


# -- lint and validate


def test_cfn_lint_passes_on_the_sam_template() -> None:
    done = cfn_lint(TEMPLATE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cfn_lint_passes_on_the_expanded_template(expanded: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "expanded.json"
    path.write_text(json.dumps(expanded, indent=1))
    done = cfn_lint(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_expanded_lint_sees_into_the_functions_events(tmp_path: Path) -> None:
    """A bad starting position inside a function's event becomes an error once expanded."""
    broken = read()
    broken["Resources"]["Projector"]["Properties"]["Events"]["Stream"]["Properties"]["StartingPosition"] = "OLDEST"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(expand(broken, bucket=BUCKET)))
    done = cfn_lint(path)
    assert done.returncode != 0
    assert "OLDEST" in done.stdout


def test_sam_validate_lint() -> None:
    sam = SAM_VENV / "bin" / "sam"
    if not sam.is_file():
        pytest.skip("the SAM CLI is not installed: `make .venv-sam/.installed` (make test does it)")
    environment = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    environment.pop("AWS_PROFILE", None)
    command = [str(sam), "validate", "--lint", "--template-file", str(TEMPLATE), "--region", REGION]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout


# -- what the expanded template declares (moto ignores these properties)


def test_the_table_is_the_stores_single_table_on_demand_with_recovery(expanded: dict[str, Any]) -> None:
    (table,) = resources(expanded, "AWS::DynamoDB::Table").values()
    properties = table["Properties"]
    assert properties["KeySchema"] == [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ]
    assert sorted(map(tuple, (d.values() for d in properties["AttributeDefinitions"]))) == [("PK", "S"), ("SK", "S")]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Retain"


def test_functions_run_python_3_12_on_arm64_from_lambda_zip(expanded: dict[str, Any]) -> None:
    functions = resources(expanded, "AWS::Lambda::Function")
    assert {f["Properties"]["Handler"] for f in functions.values()} == {
        "user_limits.aws_lambda.handler",
        "user_limits.aws_lambda.api_handler",
    }
    for function in functions.values():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == [{"Ref": "Architecture"}]
        assert properties["Code"] == {"S3Bucket": BUCKET, "S3Key": "lambda.zip"}
    assert read()["Parameters"]["Architecture"]["Default"] == "arm64"
    assert read()["Globals"]["Function"]["CodeUri"] == "../dist/lambda.zip"


def test_the_api_routes_every_path_of_an_http_api(expanded: dict[str, Any]) -> None:
    (api,) = resources(expanded, "AWS::ApiGatewayV2::Api").values()
    paths = api["Properties"]["Body"]["paths"]
    assert set(paths) == {"/", "/{proxy+}"}
    for route in paths.values():
        integration = route["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
        assert integration["payloadFormatVersion"] == "2.0"
        assert "${Api.Arn}" in integration["uri"]["Fn::Sub"]
    (stage,) = resources(expanded, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["StageName"] == "$default"


def test_the_alarms(expanded: dict[str, Any]) -> None:
    alarms = resources(expanded, "AWS::CloudWatch::Alarm")
    assert {name: (a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for name, a in alarms.items()} == ALARMS
    # The product's metrics carry the service dimension Powertools adds: the stack's name.
    environment = expanded["Resources"]["Projector"]["Properties"]["Environment"]["Variables"]
    assert environment["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "UserLimits"
    for name, (namespace, _) in ALARMS.items():
        if namespace == "UserLimits":
            assert alarms[name]["Properties"]["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]


# -- the stack, in moto's CloudFormation


class Stack:
    """A stack created from the expanded template, and clients of the moto server it lives in."""

    def __init__(self, server: DynamoDBServer, template: dict[str, Any], parameters: dict[str, str]) -> None:
        import boto3

        self.server = server
        self.session = boto3.session.Session(region_name=REGION)
        self.name = f"user-limits-{uuid.uuid4().hex[:8]}"
        s3 = self.client("s3")
        if BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="lambda.zip", Body=_tiny_zip())
        self.cloudformation = self.client("cloudformation")
        self.cloudformation.create_stack(
            StackName=self.name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        description = self.cloudformation.describe_stacks(StackName=self.name)["Stacks"][0]
        self.status = description["StackStatus"]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
        summaries = self.cloudformation.list_stack_resources(StackName=self.name)["StackResourceSummaries"]
        self.resources = {r["LogicalResourceId"]: r for r in summaries if r.get("LogicalResourceId")}

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.server.endpoint)

    def physical(self, logical_id: str) -> str:
        return str(self.resources[logical_id]["PhysicalResourceId"])

    def mapping(self) -> dict[str, Any]:
        configuration: dict[str, Any] = self.client("lambda").get_event_source_mapping(
            UUID=self.physical("ProjectorStream")
        )
        return configuration

    def role_statements(self, logical_id: str) -> list[dict[str, Any]]:
        iam = self.client("iam")
        role = self.physical(logical_id)
        statements: list[dict[str, Any]] = []
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            if isinstance(document, str):
                # moto keeps a policy created by CloudFormation as the text of a Python dict.
                document = ast.literal_eval(document) if document.startswith("{'") else json.loads(document)
            # moto leaves an AWS::NoValue in a list as null, where CloudFormation drops it.
            statements.extend(statement for statement in document["Statement"] if statement is not None)
        assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
        return statements

    def allowed(self, logical_id: str) -> dict[str, set[str]]:
        """Resource ARN -> the actions the role allows on it."""
        allowed: dict[str, set[str]] = {}
        for statement in self.role_statements(logical_id):
            assert statement["Effect"] == "Allow"
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources_ = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources_:
                allowed.setdefault(resource, set()).update(actions)
        return allowed

    def table_arn(self) -> str:
        table = self.outputs["TableName"]
        arn: str = self.client("dynamodb").describe_table(TableName=table)["Table"]["TableArn"]
        return arn

    def queue_arn(self) -> str:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.outputs["FailedBatchesQueueUrl"], AttributeNames=["QueueArn"]
        )
        arn: str = attributes["Attributes"]["QueueArn"]
        return arn

    def store_url(self) -> str:
        return f"{self.outputs['StoreUrl']}&endpoint={self.server.endpoint}"


def _tiny_zip() -> bytes:
    # moto stores the code and never runs it; the real lambda.zip runs in test_lambda_runtime.py.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("user_limits/__init__.py", "")
    return buffer.getvalue()


@pytest.fixture
def make_stack(
    dynamodb_server: DynamoDBServer,
    dynamodb_credentials: None,
    expanded: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Stack]:
    """Stacks on moto's server, with dummy credentials and no instance metadata lookups."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    def make(**parameters: str) -> Stack:
        stack = Stack(dynamodb_server, expanded, {"JwtSecret": SECRET, **parameters})
        assert stack.status == "CREATE_COMPLETE"
        return stack

    return make


@pytest.fixture
def dynamodb_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every DynamoDB operation made in the test, with its parameters (a spy: the calls go through)."""
    from botocore.client import BaseClient

    calls: list[tuple[str, dict[str, Any]]] = []
    original = BaseClient._make_api_call

    def spy(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name == "dynamodb":
            calls.append((operation, params))
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", spy)
    yield calls


def log_group_arn(allowed: dict[str, set[str]], group: str) -> str:
    (arn,) = [arn for arn in allowed if arn.startswith("arn:aws:logs:")]
    assert arn.split(":log-group:")[1].removesuffix(":*") == group
    return arn


def iam_actions(calls: list[tuple[str, dict[str, Any]]]) -> set[str]:
    """The IAM actions DynamoDB authorizes the calls with: a transaction as the actions inside it."""
    inside = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
    actions: set[str] = set()
    for operation, params in calls:
        if operation == "TransactWriteItems":
            actions.update(f"dynamodb:{inside[kind]}" for item in params["TransactItems"] for kind in item)
        else:
            actions.add(f"dynamodb:{operation}")
    return actions


@pytest.mark.servers
def test_the_stack_creates_every_resource(make_stack: Callable[..., Stack], expanded: dict[str, Any]) -> None:
    stack = make_stack()
    assert set(stack.resources) == set(expanded["Resources"]) - NOT_IN_MOTO
    assert {r["ResourceStatus"] for r in stack.resources.values()} == {"CREATE_COMPLETE"}
    assert set(stack.outputs) >= {"ApiUrl", "FailedBatchesQueueUrl", "TableName", "StoreUrl", "StreamArn"}
    assert stack.outputs["TableName"] == stack.physical("Table")
    assert stack.outputs["FailedBatchesQueueUrl"] == stack.physical("FailedBatches")
    assert stack.outputs["ApiUrl"].startswith("https://") and ".execute-api.us-east-1." in stack.outputs["ApiUrl"]
    table = stack.client("dynamodb").describe_table(TableName=stack.outputs["TableName"])["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    functions = {f["FunctionName"]: f for f in stack.client("lambda").list_functions()["Functions"]}
    projector, api = functions[stack.physical("Projector")], functions[stack.physical("Api")]
    assert projector["Environment"]["Variables"]["USER_LIMITS_STORE"] == stack.outputs["StoreUrl"]
    assert api["Environment"]["Variables"] == {
        "USER_LIMITS_STORE": stack.outputs["StoreUrl"],
        "USER_LIMITS_JWT_SECRET": SECRET,
    }


@pytest.mark.servers
def test_the_mapping_has_the_safe_failure_settings(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    mapping = stack.mapping()
    assert mapping["EventSourceArn"] == stack.outputs["StreamArn"]
    assert stack.outputs["StreamArn"].endswith(f":stream/{stack.physical('Stream')}")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == 20
    assert mapping["MaximumRecordAgeInSeconds"] == 86400
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": stack.queue_arn()}}
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (1000, 1)
    assert (mapping["StartingPosition"], mapping["ParallelizationFactor"]) == ("TRIM_HORIZON", 1)
    assert "FilterCriteria" not in mapping
    assert warnings(mapping, kpl_single_key=True) == []


@pytest.mark.servers
def test_parameters_reach_the_mapping(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(
        BatchSize="500",
        MaximumBatchingWindowInSeconds="5",
        StartingPosition="LATEST",
        ParallelizationFactor="2",
        MaximumRetryAttempts="3",
        MaximumRecordAgeInSeconds="3600",
        EventTypeFilter="on",
    )
    mapping = stack.mapping()
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (500, 5)
    assert (mapping["StartingPosition"], mapping["ParallelizationFactor"]) == ("LATEST", 2)
    assert (mapping["MaximumRetryAttempts"], mapping["MaximumRecordAgeInSeconds"]) == (3, 3600)
    (pattern,) = [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]]
    assert pattern == {"data": {"type": ["USER_LIMIT_CREATED", "USER_LIMIT_PROGRESS_CHANGED", "USER_LIMIT_RESET"]}}
    assert [line.split(" (")[0] for line in warnings(mapping)] == ["a data filter on type"]


@pytest.mark.servers
def test_an_existing_stream(make_stack: Callable[..., Stack]) -> None:
    kinesis = make_stack().client("kinesis")
    name = f"limit-events-{uuid.uuid4().hex[:6]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    key = "arn:aws:kms:us-east-1:123456789012:key/0b7a2d4e-5f60-4c8b-9e1d-3a2b1c0d9e8f"
    stack = make_stack(ExistingStreamArn=arn, StreamKmsKeyArn=key)
    assert "Stream" not in stack.resources
    assert stack.outputs["StreamArn"] == arn
    assert stack.mapping()["EventSourceArn"] == arn
    allowed = stack.allowed("ProjectorRole")
    assert allowed[arn] == STREAM_READ_ACTIONS
    assert allowed[key] == {"kms:Decrypt"}


@pytest.mark.servers
def test_the_roles_are_least_privilege(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    table, queue, stream = stack.table_arn(), stack.queue_arn(), stack.outputs["StreamArn"]
    logs = {"logs:CreateLogStream", "logs:PutLogEvents"}
    projector = stack.allowed("ProjectorRole")
    assert projector == {
        stream: STREAM_READ_ACTIONS,
        table: PROJECTOR_TABLE_ACTIONS,
        queue: {"sqs:SendMessage"},
        log_group_arn(projector, stack.physical("ProjectorLogs")): logs,
    }
    api = stack.allowed("ApiRole")
    assert api == {table: API_TABLE_ACTIONS, log_group_arn(api, stack.physical("ApiLogs")): logs}
    assert all("*" not in arn for arn in [*projector, *api])


@pytest.mark.servers
def test_the_handler_and_the_api_work_on_the_stacks_table_within_their_roles(
    make_stack: Callable[..., Stack],
    dynamodb_calls: list[tuple[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared sample through the real handler into the stack's table: the table is the store's
    layout, and every DynamoDB action the handler and the API's reads make is one their role allows."""
    stack = make_stack()
    table = stack.table_arn()
    sample = json.loads(SHARED_SAMPLE.read_text())
    monkeypatch.setenv("USER_LIMITS_STORE", stack.store_url())
    aws_lambda.reset()
    dynamodb_calls.clear()
    try:
        assert aws_lambda.handler(lambda_event(sample)) == {"batchItemFailures": []}
    finally:
        aws_lambda.reset()
    projector_actions = iam_actions(dynamodb_calls)
    assert projector_actions <= stack.allowed("ProjectorRole")[table]
    assert {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"} <= projector_actions

    from user_limits.bootstrap import open_store

    user = next(e["aggregateId"] for e in sample if e["type"] == "USER_LIMIT_CREATED")
    store = open_store(stack.store_url())
    try:
        dynamodb_calls.clear()
        store.ping()
        limits = store.user_limits(user)
        assert limits and store.user_limit(user, limits[0].user_limit_id) == limits[0]
        assert store.as_of() is not None
        assert iam_actions(dynamodb_calls) <= stack.allowed("ApiRole")[table]
        assert store.stats().as_json() == EXPECTED_COUNTS  # the CLI's read (Scan): the operator's, not the API's
    finally:
        store.close()
