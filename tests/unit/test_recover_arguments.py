"""``user-limits recover`` with bad arguments: one line on stderr and exit 2, checked before any store
is opened or any AWS service is called (no server runs here: a call would fail differently)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/failed-batches"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "give --queue URL (an SQS on-failure destination) or --bucket s3://BUCKET/PREFIX, not both"),
        (("--queue", QUEUE, "--bucket", "s3://b-1"), "give --queue URL"),
        (("--queue", "failed-batches"), "--queue 'failed-batches': expected an http:// or https:// URL"),
        (("--queue", "https://sqs.eu-west-1.amazonaws.com/"), "a queue URL ends with /ACCOUNT/QUEUE_NAME"),
        (("--queue", "http://[::1"), "--queue 'http://[::1': expected an http:// or https:// URL"),
        (("--queue", QUEUE, "--endpoint", "localhost:5000"), "--endpoint 'localhost:5000': expected an http://"),
        (("--queue", QUEUE, "--endpoint", "http://h:99999"), "--endpoint 'http://h:99999'"),
        (("--queue", QUEUE, "--kinesis-endpoint", "ftp://h"), "--kinesis-endpoint 'ftp://h': expected an http://"),
        (("--queue", QUEUE, "--region", "eu west 1"), "--region 'eu west 1': not an AWS region name"),
        (("--bucket", "my-bucket"), "--bucket 'my-bucket': expected s3://BUCKET or s3://BUCKET/PREFIX"),
        (("--bucket", "s3://My_Bucket/x"), "--bucket 's3://My_Bucket/x': expected s3://BUCKET"),
        (("--bucket", "s3://"), "--bucket 's3://': expected s3://BUCKET"),
        (("--bucket", "s3://b-1/a\x1bb"), "the prefix holds characters that are not printable"),
        (
            ("--bucket", "s3://b-1", "--kinesis-endpoint", "http://127.0.0.1:4568"),
            "--kinesis-endpoint is for --queue",
        ),
        (("--queue", QUEUE, "--store", ""), "--store '': empty"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(run: Any, tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    done = run("recover", *args)
    assert done.code == 2, done
    assert done.out == ""
    assert done.err.startswith("user-limits: error: ")
    assert expected in done.err.replace("\\x1b", "\x1b")
    assert len(done.err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # the default store was not created
