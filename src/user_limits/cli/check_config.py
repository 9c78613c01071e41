"""check-config: the settings of a Kinesis event source mapping known to stall a shard or lose data.

Reads the JSON of ``aws lambda get-event-source-mapping`` (or ``list-event-source-mappings``), a
SAM template (the ``Kinesis`` events of its functions) or a plain CloudFormation template
(``AWS::Lambda::EventSourceMapping``), and prints one line per dangerous setting. A template's
parameters take their defaults unless overridden with ``--parameter NAME=VALUE``. Exit 1 if any
warning, 0 if none, 2 for input that is none of these.

A property that is absent has the event source mapping's own default: no partial batch
responses, infinite retries (-1), no maximum record age (-1), no destination, no bisection.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from user_limits.cli.app import app
from user_limits.errors import UserError
from user_limits.inputs import read_file
from user_limits.operations.cfn_template import Resolver, TemplateError, load

STREAM_EVENT_TYPES = ("Kinesis", "DynamoDB")  # SAM event types that are stream mappings
INFINITE = -1


@dataclass(frozen=True, slots=True)
class MappingSettings:
    """One event source mapping's settings, as the API names them; ``name`` says where it was found."""

    name: str
    settings: Mapping[str, Any]


def mappings(document: Any, overrides: Mapping[str, str], source: str) -> list[MappingSettings]:
    """The stream event source mappings of any accepted document; UserError if there are none."""
    if not isinstance(document, Mapping):
        raise UserError(f"{source}: expected a JSON or YAML object (an event source mapping or a template)")
    if "Resources" in document:
        found = list(_from_template(document, overrides, source))
    else:
        if overrides:
            raise UserError(f"{source}: --parameter applies to templates only")
        if isinstance(document.get("EventSourceMappings"), list):
            items = document["EventSourceMappings"]
        elif any(key in document for key in ("UUID", "EventSourceArn", "FunctionArn")):
            items = [document]
        else:
            raise UserError(f"{source}: neither an event source mapping (no UUID, EventSourceArn) nor a template")
        found = [
            MappingSettings(str(item.get("UUID") or item.get("EventSourceArn") or "mapping"), item)
            for item in items
            if isinstance(item, Mapping) and _is_stream(item)
        ]
    if not found:
        raise UserError(f"{source}: no Kinesis or DynamoDB stream event source mapping found")
    return found


def _from_template(template: Mapping[str, Any], overrides: Mapping[str, str], source: str) -> Iterator[MappingSettings]:
    try:
        resolver = Resolver(template, overrides)
        resources = template.get("Resources")
        if not isinstance(resources, Mapping):
            raise UserError(f"{source}: Resources is not a mapping")
        for logical_id, resource in resources.items():
            if not isinstance(resource, Mapping):
                continue
            if "Condition" in resource and not resolver.condition(str(resource["Condition"])):
                continue
            properties = resolver.resolve(resource.get("Properties") or {})
            if not isinstance(properties, Mapping):
                continue
            kind = resource.get("Type")
            if kind == "AWS::Lambda::EventSourceMapping" and _is_stream(properties, resources):
                yield MappingSettings(str(logical_id), properties)
            elif kind == "AWS::Serverless::Function":
                events = properties.get("Events")
                for event_name, event in events.items() if isinstance(events, Mapping) else ():
                    if isinstance(event, Mapping) and event.get("Type") in STREAM_EVENT_TYPES:
                        settings = event.get("Properties")
                        yield MappingSettings(
                            f"{logical_id}.Events.{event_name}", settings if isinstance(settings, Mapping) else {}
                        )
    except TemplateError as error:
        raise UserError(f"{source}: {error}") from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply") from None


def _is_stream(settings: Mapping[str, Any], resources: Mapping[str, Any] | None = None) -> bool:
    """Kinesis and DynamoDB stream mappings need a starting position; SQS, MQ and others have none."""
    if "StartingPosition" in settings:
        return True
    arn = settings.get("EventSourceArn")
    if isinstance(arn, str):
        return ":kinesis:" in arn or "/stream/" in arn
    if isinstance(arn, Mapping) and resources is not None:
        target = arn.get("Fn::GetAtt", arn.get("Ref"))
        name = target[0] if isinstance(target, list) and target else target
        resource = resources.get(name) if isinstance(name, str) else None
        return isinstance(resource, Mapping) and resource.get("Type") == "AWS::Kinesis::Stream"
    return False


def _number(value: Any, default: int) -> int | None:
    """An integer setting; None when only known once deployed."""
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError:
        return None


def _data_filters(settings: Mapping[str, Any]) -> list[str]:
    """The fields of ``data`` that the mapping's filter patterns match on."""
    criteria = settings.get("FilterCriteria")
    filters = criteria.get("Filters") if isinstance(criteria, Mapping) else None
    fields: list[str] = []
    for item in filters if isinstance(filters, list) else []:
        pattern = item.get("Pattern") if isinstance(item, Mapping) else None
        if isinstance(pattern, str):
            try:
                pattern = json.loads(pattern)
            except (ValueError, RecursionError):
                continue
        data = pattern.get("data") if isinstance(pattern, Mapping) else None
        if isinstance(data, Mapping):
            fields.extend(str(field) for field in data)
        elif data is not None:
            fields.append("data")
    return fields


def warnings(settings: Mapping[str, Any], kpl_single_key: bool = False) -> list[str]:
    """One line per setting known to stall a shard or lose data."""
    found: list[str] = []
    response_types = settings.get("FunctionResponseTypes")
    if not (isinstance(response_types, list) and "ReportBatchItemFailures" in response_types):
        found.append(
            "partial batch responses are off (FunctionResponseTypes lacks ReportBatchItemFailures): "
            "Lambda ignores the record the handler reports, so a batch the store did not commit counts as done"
        )
    retries = _number(settings.get("MaximumRetryAttempts"), INFINITE)
    max_age = _number(settings.get("MaximumRecordAgeInSeconds"), INFINITE)
    if retries == INFINITE and max_age == INFINITE:
        found.append(
            "infinite retries (MaximumRetryAttempts -1) and no maximum record age (MaximumRecordAgeInSeconds -1): "
            "one batch that keeps failing stalls its shard until its records expire from the stream"
        )
    destination_config = settings.get("DestinationConfig")
    on_failure = destination_config.get("OnFailure") if isinstance(destination_config, Mapping) else None
    if not (isinstance(on_failure, Mapping) and on_failure.get("Destination")):
        found.append(
            "no on-failure destination (DestinationConfig.OnFailure): a batch Lambda gives up on is dropped "
            "without a trace, and `user-limits recover` has nothing to read"
        )
    if str(settings.get("BisectBatchOnFunctionError", False)).lower() != "true":
        found.append(
            "bisect on function error is off (BisectBatchOnFunctionError): a batch whose invocation fails "
            "(timeout, out of memory) is retried whole instead of split"
        )
    fields = _data_filters(settings)
    if fields:
        on = "type" if "type" in fields else ", ".join(fields)
        found.append(
            f"a data filter on {on} (FilterCriteria): records that are not JSON, KPL aggregates among them, "
            "are dropped silently instead of dead-lettered"
        )
    factor = _number(settings.get("ParallelizationFactor"), 1)
    if kpl_single_key and factor is not None and factor > 1:
        found.append(
            f"parallelization factor {factor} with KPL aggregates under one partition key: Lambda keeps order "
            "per partition key only, so one user's events in two aggregates can be applied out of order"
        )
    return found


@app.command("check-config")
def check_config(
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="get-event-source-mapping JSON, a SAM or CloudFormation template; - for standard input.",
            show_default=False,
        ),
    ],
    parameter: Annotated[
        list[str] | None,
        typer.Option("--parameter", metavar="NAME=VALUE", help="A template parameter's value (repeatable)."),
    ] = None,
    kpl_single_key: Annotated[
        bool,
        typer.Option(
            "--kpl-single-key",
            help="Producers write KPL aggregates: many users' records under one partition key.",
        ),
    ] = False,
) -> None:
    """Warn about event source mapping settings that stall a shard or lose data (exit 1 if any)."""
    overrides: dict[str, str] = {}
    for item in parameter or []:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise UserError(f"--parameter {item!r}: expected NAME=VALUE")
        overrides[name] = value
    data = sys.stdin.buffer.read() if source == "-" else read_file(source)
    name = "stdin" if source == "-" else source
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{name}: not UTF-8 text") from None
    try:
        document = load(text, name)
    except TemplateError as error:
        raise UserError(str(error)) from None
    found = 0
    for mapping in mappings(document, overrides, name):
        lines = warnings(mapping.settings, kpl_single_key)
        found += len(lines)
        for line in lines:
            print(f"{name}: {mapping.name}: warning: {line}")
        if not lines:
            print(f"{name}: {mapping.name}: ok")
    if found:
        raise typer.Exit(1)
