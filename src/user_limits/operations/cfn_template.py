"""CloudFormation and SAM templates, read as data: YAML with the short intrinsic tags, or JSON.

``load`` turns ``!Ref X`` into ``{"Ref": "X"}``, ``!GetAtt A.B`` into ``{"Fn::GetAtt": ["A", "B"]}``
and every other ``!Name`` into ``{"Fn::Name": ...}``, the long form CloudFormation itself uses.
``Resolver`` evaluates what can be known before a deployment: ``Ref`` to a parameter (its default
or an override), ``Fn::If`` on a condition, the condition functions, and ``AWS::NoValue``.
Anything else (``Fn::GetAtt``, ``Fn::Sub``, a ``Ref`` to a resource) stays as it is: a value that
is set, but only known once deployed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from user_limits.errors import UserError

NO_VALUE = object()  # what ``!Ref AWS::NoValue`` resolves to: the property is left out


class TemplateError(UserError):
    """A template that cannot be read or evaluated."""


class _Loader(yaml.SafeLoader):
    """YAML as CloudFormation reads it: short intrinsic tags, no timestamps (``2010-09-09`` is text)."""


def _intrinsic(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _intrinsic)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(text: str | bytes, name: str = "template") -> Any:
    """A YAML or JSON document (JSON is YAML); raises TemplateError naming ``name``."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise TemplateError(f"{name}: not YAML or JSON{where}: {problem}") from None
    except RecursionError:
        raise TemplateError(f"{name}: nested too deeply") from None


class Resolver:
    """Evaluates a template's values for given parameter values (the defaults, overridden)."""

    def __init__(self, template: Mapping[str, Any], overrides: Mapping[str, str] | None = None) -> None:
        self.template = template
        parameters = template.get("Parameters") or {}
        if not isinstance(parameters, Mapping):
            raise TemplateError("Parameters is not a mapping")
        unknown = sorted(set(overrides or {}) - set(parameters))
        if unknown:
            raise TemplateError(f"no such parameter: {', '.join(unknown)}")
        self.parameters: dict[str, Any] = {
            name: spec.get("Default") for name, spec in parameters.items() if isinstance(spec, Mapping)
        }
        self.parameters.update(overrides or {})
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()

    def condition(self, name: str) -> bool:
        if name in self._evaluating:
            raise TemplateError(f"condition {name} refers to itself")
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if not isinstance(conditions, Mapping) or name not in conditions:
                raise TemplateError(f"no such condition: {name}")
            self._evaluating.add(name)
            try:
                self._conditions[name] = bool(self.resolve(conditions[name]))
            finally:
                self._evaluating.discard(name)
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        """The value with everything knowable evaluated; ``NO_VALUE`` for a left-out property."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" and isinstance(argument, str):
                if argument == "AWS::NoValue":
                    return NO_VALUE
                if argument in self.parameters:
                    return self.parameters[argument]
                return dict(value)  # a resource or a pseudo parameter: known once deployed
            if key == "Condition" and isinstance(argument, str):
                return self.condition(argument)
            if key == "Fn::If" and isinstance(argument, list) and len(argument) == 3:
                return self.resolve(argument[1] if self.condition(str(argument[0])) else argument[2])
            if key == "Fn::Equals" and isinstance(argument, list) and len(argument) == 2:
                left, right = (self.resolve(item) for item in argument)
                return str(left) == str(right)
            if key == "Fn::Not" and isinstance(argument, list) and len(argument) == 1:
                return not self.resolve(argument[0])
            if key == "Fn::And" and isinstance(argument, list):
                return all(self.resolve(item) for item in argument)
            if key == "Fn::Or" and isinstance(argument, list):
                return any(self.resolve(item) for item in argument)
            if key.startswith("Fn::"):
                return dict(value)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}
