"""Test inputs shared by the tests and the benchmarks: synthetic streams and Lambda Kinesis events.

- ``synthetic``: a deterministic generator of realistic, messy upstream streams.
- ``lambda_events``: Lambda Kinesis events built from envelope bytes, as an event source mapping
  delivers them.

Not part of the product: ``lambda.zip`` leaves this package out (see ``cli/build_lambda.py``).
"""

from user_limits.testing.lambda_events import events_from_envelopes, lambda_events, lambda_record
from user_limits.testing.synthetic import SyntheticRecord, generate

__all__ = ["SyntheticRecord", "events_from_envelopes", "generate", "lambda_events", "lambda_record"]
