"""The Kinesis client, shared by the consumer and the producer.

- ``kinesis_client``: a boto3 client, made as every AWS client is (``user_limits.aws``).
- ``THROTTLED``: the error codes that mean "slow down", not "this request is wrong".
- ``full_jitter``: the one backoff formula (AWS's "full jitter"), so that callers throttled
  together do not come back together.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from user_limits.aws import aws_client

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

THROTTLED = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"})


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, …): uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


def error_code(error: ClientError) -> str:
    """The AWS error code of a failed call ("" when the response has none)."""
    return error.response.get("Error", {}).get("Code", "")


def kinesis_client(endpoint: str | None = None, region: str | None = None) -> KinesisClient:
    """A Kinesis client; UserError (one line) for a bad ``--endpoint`` or ``--region``."""
    client: KinesisClient = aws_client("kinesis", endpoint, region)
    return client
