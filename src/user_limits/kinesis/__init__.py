"""Kinesis: the records it delivers, its client, the standalone consumer and the producer.

- ``records``: Lambda Kinesis events and GetRecords responses as StreamRecords (one KPL path).
  Light: the Lambda handler imports it on every cold start.
- ``client``: the boto3 client, the throttling codes, the one backoff.
- ``shards``: pure shard planning (assignment, parents before children, the end-of-shard mark).
- ``leases``: the fleet's lease protocol, pure (fair share, takes, steals, expiry).
- ``consumer``: the standalone consumer; ``producer``: PutRecords in partition-key order.

The submodules are imported by name, not from here: ``client``, ``consumer`` and ``producer`` pull
in botocore, which the Lambda handler's cold start must not pay for.
"""

__all__ = ["client", "consumer", "leases", "producer", "records", "shards"]
