"""Day-two operations: what an operator runs beside the stream, each through the same batch path.

- ``archive`` (with ``json_splitter``): replay a Kinesis Data Firehose archive from S3;
- ``snapshots``: write a snapshot of the read model and import one, to start mid-stream;
- ``recover`` (with ``invocation_record``): re-apply the batches Lambda sent to its on-failure destination;
- ``parked_review``: the parked events per limit, and expiring those parked too long;
- ``migrate``: everything a store holds, copied into another store of any kind;
- ``cfn_template``: event source mapping settings read from a SAM or CloudFormation template.
"""

__all__: list[str] = []
