"""boto3 clients, made one way for every edge that talks to AWS: Kinesis, S3 and SQS.

- ``--endpoint`` and ``--region`` are checked first, so that a bad one is one line (UserError)
  rather than botocore's traceback; so is whatever else of the configuration botocore refuses
  (say, a bad ``AWS_ENDPOINT_URL``).
- boto3 is imported only when a client is made: the Lambda handler on SQLite never loads it, and
  an install without boto3 (it comes with the ``dynamodb`` extra) gets one line, not an ImportError.
- A local S3 (moto, MinIO) on an endpoint of its own is addressed by path: BUCKET.127.0.0.1 is
  no host.
- Botocore's standard retries cover network errors; throttling is backed off by the callers, with
  :func:`user_limits.kinesis.client.full_jitter`.

The DynamoDB store makes its own client (``stores/dynamodb/client.py``): its retries are part of
the store's commit protocol.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from user_limits.errors import UserError

# A region is a label of the endpoint's host name (kinesis.REGION.amazonaws.com).
_REGION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_CONFIGURED_REGION = "the configured AWS region (AWS_REGION, AWS_DEFAULT_REGION or ~/.aws/config)"
_NAMES = {"kinesis": "Kinesis", "s3": "S3", "sqs": "SQS"}


def check_endpoint(endpoint: str | None) -> None:
    """UserError unless ``endpoint`` (``--endpoint``) is an http(s) URL with a host and a valid port."""
    if endpoint is None:
        return
    wrong = f"--endpoint {endpoint!r}: expected an http:// or https:// URL, e.g. http://127.0.0.1:4568"
    if not endpoint or any(char.isspace() or not char.isprintable() for char in endpoint):
        raise UserError(wrong)
    try:
        parts = urlsplit(endpoint)
        port = parts.port  # a port out of 0-65535 or not a number raises
    except ValueError as error:  # also a broken IPv6 address: http://[::1
        raise UserError(f"{wrong} ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise UserError(wrong)


def check_region(region: str | None, source: str = "--region") -> None:
    """UserError unless ``region`` is None or a region name such as eu-west-1."""
    if region is not None and not _REGION.fullmatch(region):
        raise UserError(f"{source} {region!r}: not an AWS region name, such as eu-west-1")


def aws_client(
    service: str, endpoint: str | None, region: str | None, *, max_attempts: int = 3, read_timeout: int = 30
) -> Any:
    """A boto3 client for ``service`` ("kinesis", "s3" or "sqs"); UserError (one line) for a bad
    ``--endpoint``, ``--region`` or configuration. Callers give it its typed name."""
    name = _NAMES[service]
    check_endpoint(endpoint)
    check_region(region)
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise UserError(f"talking to {name} needs boto3: pip install 'user-limits[dynamodb]'") from None

    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts}, connect_timeout=5, read_timeout=read_timeout
    )
    if service == "s3" and endpoint is not None:
        config = config.merge(Config(s3={"addressing_style": "path"}))
    try:
        session = boto3.session.Session()
        if region is None:
            region = session.region_name or "us-east-1"
            check_region(region, _CONFIGURED_REGION)
        return session.client(service, endpoint_url=endpoint, region_name=region, config=config)  # type: ignore[call-overload]
    except (BotoCoreError, ValueError) as error:
        raise UserError(f"cannot set up the {name} client: {error}") from None
