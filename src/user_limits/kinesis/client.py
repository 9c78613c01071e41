"""The Kinesis client, shared by the consumer and the producer.

- ``kinesis_client``: a boto3 client, with ``--endpoint`` and ``--region`` checked first, so that
  a bad one is one line (UserError) rather than botocore's traceback.
- ``THROTTLED``: the error codes that mean "slow down", not "this request is wrong".
- ``full_jitter``: the one backoff formula (AWS's "full jitter"), so that callers throttled
  together do not come back together.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from user_limits.errors import UserError

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

THROTTLED = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"})

# A region is a label of the endpoint's host name (kinesis.REGION.amazonaws.com).
_REGION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, …): uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


def error_code(error: ClientError) -> str:
    """The AWS error code of a failed call ("" when the response has none)."""
    return error.response.get("Error", {}).get("Code", "")


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


def kinesis_client(endpoint: str | None = None, region: str | None = None) -> KinesisClient:
    """A Kinesis client; UserError (one line) for a bad ``--endpoint`` or ``--region``, checked
    here rather than left to botocore, whose errors for them are tracebacks."""
    check_endpoint(endpoint)
    check_region(region)
    import boto3
    from botocore.config import Config

    # Botocore retries network errors a few times; throttling is backed off by the callers.
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
    try:
        session = boto3.session.Session()
        if region is None:
            region = session.region_name or "us-east-1"
            check_region(region, "the configured AWS region (AWS_REGION, AWS_DEFAULT_REGION or ~/.aws/config)")
        return session.client("kinesis", endpoint_url=endpoint, region_name=region, config=config)
    except (BotoCoreError, ValueError) as error:
        # Whatever else the configuration holds that botocore refuses (say, a bad AWS_ENDPOINT_URL).
        raise UserError(f"cannot set up the Kinesis client: {error}") from None
