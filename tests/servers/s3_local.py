"""A local S3 for the tests: moto's server, the very process that serves the local DynamoDB (moto
serves every service on one port), so the suite starts one server for both.

Fixtures: ``s3_bucket`` (a fresh bucket per test, emptied and deleted afterwards, with dummy
credentials in the environment for that test only and the EC2 metadata service off, so that boto3
never looks for credentials on the network).
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers.dynamodb_local import REGION, DynamoDBServer, set_dummy_credentials

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3Bucket:
    """A bucket on the local S3, and how to put archive objects in it."""

    def __init__(self, endpoint: str, name: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.name = name
        self.client: S3Client = boto3.session.Session().client("s3", region_name=REGION, endpoint_url=endpoint)

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.name}/{prefix}"

    def put(self, key: str, data: bytes, *, gzipped: bool = False, content_encoding: str | None = None) -> None:
        extra: dict[str, Any] = {} if content_encoding is None else {"ContentEncoding": content_encoding}
        body = gzip.compress(data, mtime=0) if gzipped else data
        self.client.put_object(Bucket=self.name, Key=key, Body=body, **extra)

    def create(self) -> None:
        self.client.create_bucket(Bucket=self.name)

    def delete(self) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        for page in pages:
            for item in page.get("Contents", []):
                self.client.delete_object(Bucket=self.name, Key=item["Key"])
        self.client.delete_bucket(Bucket=self.name)
        self.client.close()


def new_bucket_name() -> str:
    return f"user-limits-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials in the environment, and no EC2 metadata service, for this test only."""
    set_dummy_credentials(monkeypatch)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)


@pytest.fixture
def s3_bucket(dynamodb_server: DynamoDBServer, s3_credentials: None) -> Iterator[S3Bucket]:
    """A fresh, empty bucket on the local S3, deleted after the test."""
    bucket = S3Bucket(dynamodb_server.endpoint, new_bucket_name())
    bucket.create()
    yield bucket
    bucket.delete()
