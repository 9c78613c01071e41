"""check-config: each dangerous event source mapping setting warned about alone, in each input form
(the get-event-source-mapping JSON, a SAM template, a plain CloudFormation template), and bad input
as one line with exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sam_template import TEMPLATE
from user_limits.cli import main
from user_limits.cli.check_config import mappings, warnings
from user_limits.errors import UserError

STREAM_ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/limit-events"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:user-limits-failed-batches"

# What `aws lambda get-event-source-mapping` prints for a safely configured mapping.
SAFE: dict[str, Any] = {
    "UUID": "6e3e1f2a-0a3b-4c4f-9d1e-2a7b8c9d0e1f",
    "StartingPosition": "TRIM_HORIZON",
    "BatchSize": 1000,
    "MaximumBatchingWindowInSeconds": 1,
    "ParallelizationFactor": 1,
    "EventSourceArn": STREAM_ARN,
    "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:user-limits-projector",
    "LastModified": "2025-05-20T10:00:00+00:00",
    "LastProcessingResult": "No records processed",
    "State": "Enabled",
    "StateTransitionReason": "User action",
    "DestinationConfig": {"OnFailure": {"Destination": QUEUE_ARN}},
    "MaximumRecordAgeInSeconds": 86400,
    "BisectBatchOnFunctionError": True,
    "MaximumRetryAttempts": 20,
    "TumblingWindowInSeconds": 0,
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
}
TYPE_FILTER = {"Filters": [{"Pattern": json.dumps({"data": {"type": ["USER_LIMIT_CREATED"]}})}]}


class Run(NamedTuple):
    code: int
    out: str
    err: str


def check(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> Run:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["user-limits", "check-config", *args])
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    code = done.value.code
    return Run(code if isinstance(code, int) else 1, captured.out, captured.err)


def write(tmp_path: Path, document: Any, name: str = "mapping.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_a_safe_mapping_is_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, SAFE)
    run = check(capsys, monkeypatch, path, "--kpl-single-key")
    assert run == Run(0, f"{path}: {SAFE['UUID']}: ok\n", "")


DANGERS = {
    "partial batch responses off": ({"FunctionResponseTypes": []}, "partial batch responses are off"),
    "infinite retries, no maximum age": (
        {"MaximumRetryAttempts": -1, "MaximumRecordAgeInSeconds": -1},
        "infinite retries (MaximumRetryAttempts -1) and no maximum record age",
    ),
    "no on-failure destination": ({"DestinationConfig": {"OnFailure": {}}}, "no on-failure destination"),
    "bisect off": ({"BisectBatchOnFunctionError": False}, "bisect on function error is off"),
    "a data filter on type": ({"FilterCriteria": TYPE_FILTER}, "a data filter on type"),
}


@pytest.mark.parametrize("change, expected", DANGERS.values(), ids=DANGERS.keys())
def test_each_dangerous_setting_is_one_warning(
    change: dict[str, Any],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write(tmp_path, {**SAFE, **change})
    run = check(capsys, monkeypatch, path)
    assert run.code == 1
    assert run.err == ""
    (line,) = run.out.splitlines()
    assert line.startswith(f"{path}: {SAFE['UUID']}: warning: {expected}")


def test_infinite_retries_with_a_maximum_age_are_bounded() -> None:
    assert warnings({**SAFE, "MaximumRetryAttempts": -1}) == []
    assert warnings({**SAFE, "MaximumRecordAgeInSeconds": -1}) == []


def test_parallelization_above_one_warns_only_with_kpl_aggregates_under_one_key() -> None:
    parallel = {**SAFE, "ParallelizationFactor": 4}
    assert warnings(parallel) == []
    (line,) = warnings(parallel, kpl_single_key=True)
    assert line.startswith("parallelization factor 4 with KPL aggregates under one partition key")
    assert warnings({**SAFE, "ParallelizationFactor": 1}, kpl_single_key=True) == []


def test_absent_settings_take_the_mappings_defaults() -> None:
    """A mapping created with nothing but a stream and a position: every default is a danger."""
    bare = {"EventSourceArn": STREAM_ARN, "StartingPosition": "LATEST"}
    assert [line.split(" (")[0] for line in warnings(bare)] == [
        "partial batch responses are off",
        "infinite retries",
        "no on-failure destination",
        "bisect on function error is off",
    ]


def test_list_event_source_mappings_skips_queues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = {"UUID": "q", "EventSourceArn": QUEUE_ARN, "BatchSize": 10}
    path = write(tmp_path, {"EventSourceMappings": [queue, {**SAFE, "BisectBatchOnFunctionError": False}]})
    run = check(capsys, monkeypatch, path)
    assert run.code == 1
    assert [line.split(": warning: ")[0] for line in run.out.splitlines()] == [f"{path}: {SAFE['UUID']}"]


def test_the_projects_sam_template_is_clean(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = check(capsys, monkeypatch, str(TEMPLATE), "--kpl-single-key")
    assert run == Run(0, f"{TEMPLATE}: Projector.Events.Stream: ok\n", "")


def test_template_parameters_are_evaluated(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The filter is behind a condition on a parameter, the factor a Ref to one."""
    run = check(
        capsys,
        monkeypatch,
        str(TEMPLATE),
        "--parameter",
        "EventTypeFilter=on",
        "--parameter",
        "ParallelizationFactor=3",
        "--kpl-single-key",
    )
    assert run.code == 1
    warned = [line.split(": warning: ")[1].split(" (")[0] for line in run.out.splitlines()]
    assert warned == [
        "a data filter on type",
        "parallelization factor 3 with KPL aggregates under one partition key: "
        "Lambda keeps order per partition key only, so one user's events in two aggregates can be applied "
        "out of order",
    ]


SAM_UNSAFE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Retries:
    Type: Number
    Default: -1
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: user_limits.aws_lambda.handler
      Runtime: python3.12
      CodeUri: ../dist/lambda.zip
      Events:
        Stream:
          Type: Kinesis
          Properties:
            Stream: !GetAtt Stream.Arn
            StartingPosition: TRIM_HORIZON
            MaximumRetryAttempts: !Ref Retries
        Queue:
          Type: SQS
          Properties:
            Queue: arn:aws:sqs:eu-west-1:123456789012:q
  Stream:
    Type: AWS::Kinesis::Stream
    Properties:
      ShardCount: 1
"""


def test_a_sam_function_with_defaults_gets_every_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(SAM_UNSAFE)
    run = check(capsys, monkeypatch, str(path))
    assert run.code == 1
    lines = run.out.splitlines()
    assert {line.split(": warning: ")[0] for line in lines} == {f"{path}: Fn.Events.Stream"}
    assert len(lines) == 4
    # With finite retries the stall warning goes, the others stay.
    run = check(capsys, monkeypatch, str(path), "--parameter", "Retries=10")
    assert len(run.out.splitlines()) == 3
    assert "infinite retries" not in run.out


def test_a_cloudformation_mapping_on_a_stream_resource(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    template = {
        "Resources": {
            "Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}},
            "Mapping": {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {
                    **{
                        key: SAFE[key] for key in ("FunctionResponseTypes", "MaximumRetryAttempts", "DestinationConfig")
                    },
                    "EventSourceArn": {"Fn::GetAtt": ["Stream", "Arn"]},
                    "FunctionName": "projector",
                    "StartingPosition": "LATEST",
                },
            },
        }
    }
    path = write(tmp_path, template, "expanded.json")
    run = check(capsys, monkeypatch, path)
    assert run.code == 1
    (line,) = run.out.splitlines()
    assert line.startswith(f"{path}: Mapping: warning: bisect on function error is off")


BAD_INPUTS = {
    "missing file": (None, "cannot read"),
    "not JSON or YAML": ("{", "not YAML or JSON"),
    "a JSON array": ("[1, 2]", "expected a JSON or YAML object"),
    "not a mapping's JSON": ('{"Records": []}', "neither an event source mapping"),
    "a template without stream mappings": ('{"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}', "no Kinesis"),
    "a queue's mapping": (json.dumps({"UUID": "q", "EventSourceArn": QUEUE_ARN}), "no Kinesis"),
    "not UTF-8": (b"\xff\xfe\x00", "not UTF-8"),
    "a condition on itself": (
        '{"Conditions": {"A": {"Condition": "A"}}, "Resources": {"M": {"Type": "AWS::Lambda::EventSourceMapping",'
        ' "Condition": "A", "Properties": {}}}}',
        "refers to itself",
    ),
}


@pytest.mark.parametrize("content, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_and_exit_2(
    content: str | bytes | None,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "input"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    run = check(capsys, monkeypatch, str(path))
    assert run.code == 2
    assert run.out == ""
    assert run.err.startswith("user-limits: error: ") and message in run.err
    assert len(run.err.splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--parameter", "NoSuch=1"], "no such parameter: NoSuch"),
        (["--parameter", "ParallelizationFactor"], "NAME=VALUE"),
    ],
)
def test_bad_parameters_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = check(capsys, monkeypatch, str(TEMPLATE), *args)
    assert run.code == 2 and message in run.err and len(run.err.splitlines()) == 1


def test_a_mapping_from_standard_input(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps({**SAFE, "FunctionResponseTypes": []}).encode()))
    )
    run = check(capsys, monkeypatch, "-")
    assert run.code == 1 and run.out.startswith(f"stdin: {SAFE['UUID']}: warning: partial batch responses are off")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(
    ["UUID", "EventSourceArn", "StartingPosition", "FunctionResponseTypes", "DestinationConfig", "FilterCriteria",
     "MaximumRetryAttempts", "ParallelizationFactor", "Resources", "Parameters", "Conditions", "Events", "Type",
     "Properties", "Filters", "Pattern", "OnFailure", "Fn::If", "Ref", "Condition", "EventSourceMappings"]
)  # fmt: skip
shaped = st.recursive(
    json_values,
    lambda children: st.dictionaries(keys, children, max_size=5) | st.lists(children, max_size=3),
    max_leaves=30,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(shaped)
def test_any_document_gets_warnings_or_a_user_error(document: Any) -> None:
    """Hostile input is normal input: whatever the document, a list of lines or one UserError."""
    try:
        found = mappings(document, {}, "input")
    except UserError:
        return
    for mapping in found:
        assert all(isinstance(line, str) for line in warnings(mapping.settings, kpl_single_key=True))
