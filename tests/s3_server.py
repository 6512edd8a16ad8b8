"""The S3 server the storage tests use: moto's, started on 127.0.0.1 (a free port) for the
module that asks for it and stopped after it, with one empty bucket. pyarrow (and so Ray)
and boto3 find it through AWS_ENDPOINT_URL, as they would find MinIO or any S3-compatible
store. Registered for every test module by conftest.py."""

from __future__ import annotations

import pytest

from tests.helpers.network import free_port

BUCKET = "ablate-test"


@pytest.fixture(scope="module")
def s3():
    """The S3 endpoint (its env set for this process and its children) with one empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            mp.delenv(k, raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        try:
            yield env
        finally:
            server.stop()
