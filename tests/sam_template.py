"""The SAM template in deploy/, read and expanded as CloudFormation will see it.

``expand`` runs samtranslator (the transform CloudFormation applies to AWS::Serverless-2016-10-31)
offline: the functions' ``CodeUri`` is pointed at an S3 object first, as ``sam package`` does, and
managed policies are never looked up (the template names none).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

from user_limits.operations.cfn_template import load

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "template.yaml"
SAM_VENV = ROOT / ".venv-sam"


def read(path: Path = TEMPLATE) -> dict[str, Any]:
    document: dict[str, Any] = load(path.read_text(), str(path))
    return document


def expand(
    template: dict[str, Any],
    bucket: str = "user-limits-artifacts",
    key: str = "lambda.zip",
    region: str = "us-east-1",
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = copy.deepcopy(template)
    code = f"s3://{bucket}/{key}"
    function_globals = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in function_globals:
        function_globals["CodeUri"] = code
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in resource.get("Properties", {}):
            resource["Properties"]["CodeUri"] = code
    # The region only fills in pseudo parameters; no request is made.
    session = boto3.session.Session(region_name=region, aws_access_key_id="x", aws_secret_access_key="x")
    translator = Translator(None, Parser(), boto_session=session)
    expanded: dict[str, Any] = translator.translate(
        template, parameter_values=dict(parameters or {}), get_managed_policy_map=lambda: {}
    )
    return expanded


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    """cfn-lint of the dev environment (next to this interpreter), on one template file."""
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    return subprocess.run([str(cfn_lint), "--", str(path)], capture_output=True, text=True, timeout=300)
