"""S3 storage against a real S3-compatible HTTP server on 127.0.0.1 (moto's server mode),
through boto3 over HTTP; and a whole job storing its output there."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from pipeline.adapters.storage import output_key
from pipeline.adapters.storage.s3 import S3Storage
from pipeline.core.errors import StorageError
from tests import services
from tests.images import open_image

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on a free port of 127.0.0.1 (a real HTTP server, not an in-process mock)."""
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    port = services.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture
def bucket(s3_endpoint) -> str:
    name = f"genline-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def listing(endpoint: str, bucket: str) -> dict:
    contents = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: o["Size"] for o in contents}


def test_put_then_presigned_download_with_plain_http(s3_endpoint, bucket):
    # Given S3 storage under a prefix
    storage = S3Storage.from_url(f"s3://{bucket}/genline", s3_endpoint)

    # When an output is stored and a presigned URL is made for it
    stored = storage.put(output_key("job_x", 0, "image/png"), b"\x89PNG fake bytes", "image/png")
    url = storage.signed_url(stored.key, 60)

    # Then a plain HTTP client downloads the same bytes with the content type set
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"\x89PNG fake bytes"
    assert response.headers["Content-Type"] == "image/png"
    # and the object sits under the prefix with the SHA-256 checksum S3 verified on upload
    head = storage.client.head_object(Bucket=bucket, Key="genline/outputs/job_x/0.png", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] and head["ContentType"] == "image/png"
    assert storage.get(stored.key) == b"\x89PNG fake bytes"


def test_presigned_url_expires_after_the_configured_ttl(s3_endpoint, bucket):
    # Given a URL signed for 30 s
    storage = S3Storage.from_url(f"s3://{bucket}", s3_endpoint)
    storage.put("outputs/j/0.png", b"x", "image/png")
    before = datetime.now(timezone.utc).replace(microsecond=0)
    query = parse_qs(urlsplit(storage.signed_url("outputs/j/0.png", 30)).query)

    # Then it is a SigV4 query signature whose signed lifetime is exactly the TTL from now
    # (S3 refuses it after X-Amz-Date + X-Amz-Expires; moto's server does not check expiry,
    # so the lifetime is asserted on the signed URL itself)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["30"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert abs((signed_at - before).total_seconds()) <= 5
    assert "host" in query["X-Amz-SignedHeaders"][0] and len(query["X-Amz-Signature"][0]) == 64


def test_a_rerun_upload_overwrites_instead_of_duplicating(s3_endpoint, bucket):
    # Given an output already stored under its deterministic key
    storage = S3Storage.from_url(f"s3://{bucket}/p", s3_endpoint)
    key = output_key("job_rerun", 0, "image/png")
    storage.put(key, b"first", "image/png")

    # When the upload step runs again for the same job and output
    storage.put(key, b"second-run", "image/png")

    # Then the bucket holds one object with the new content
    assert listing(s3_endpoint, bucket) == {"p/outputs/job_rerun/0.png": len(b"second-run")}
    assert storage.get(key) == b"second-run"


def test_large_objects_go_up_in_parts(s3_endpoint, bucket):
    # Given a multipart threshold of 5 MiB (S3's smallest part)
    storage = S3Storage(bucket, "", S3Storage.from_url(f"s3://{bucket}", s3_endpoint).client,
                        multipart_threshold=5 * 1024 * 1024)
    data = os.urandom(11 * 1024 * 1024)

    # When an 11 MiB object is stored
    storage.put("outputs/big/0.png", data, "image/png")

    # Then it was sent as a multipart upload (its ETag counts the parts) and reads back whole
    etag = storage.client.head_object(Bucket=bucket, Key="outputs/big/0.png")["ETag"]
    assert etag.strip('"').endswith("-3")
    assert storage.get("outputs/big/0.png") == data


def test_delete_prefix_and_errors(s3_endpoint, bucket):
    storage = S3Storage.from_url(f"s3://{bucket}/r", s3_endpoint)
    for n in range(3):
        storage.put(output_key("job_del", n, "image/png"), b"x", "image/png")
    storage.put(output_key("job_keep", 0, "image/png"), b"x", "image/png")
    # When a job's prefix is deleted, only its objects go
    assert storage.delete_prefix("outputs/job_del/") == 3
    assert list(listing(s3_endpoint, bucket)) == ["r/outputs/job_keep/0.png"]
    # When a job's earlier attempts are deleted, the kept keys stay
    for attempt in ("a1", "a2"):
        for n in range(2):
            storage.put(output_key("job_two", n, "image/png", attempt), b"x", "image/png")
    kept = [output_key("job_two", n, "image/png", "a2") for n in range(2)]
    assert storage.delete_prefix("outputs/job_two/", keep=kept) == 2
    assert sorted(listing(s3_endpoint, bucket)) == ["r/outputs/job_keep/0.png", *[f"r/{key}" for key in kept]]
    # A missing bucket or key is a StorageError naming it, never a raw botocore error
    storage.check()
    with pytest.raises(StorageError, match="no-such-bucket"):
        S3Storage.from_url("s3://no-such-bucket", s3_endpoint).check()
    with pytest.raises(StorageError, match="outputs/none"):
        storage.get("outputs/none/0.png")


def test_a_job_stores_its_output_in_s3_and_the_api_redirects_to_a_presigned_url(s3_endpoint, bucket, make_stack):
    # Given a stack whose STORAGE_URL is the bucket, and its worker
    stack = make_stack(STORAGE_URL=f"s3://{bucket}/jobs", S3_ENDPOINT_URL=s3_endpoint, GENLINE_URL_TTL_S=120, **AWS_ENV)
    stack.start_worker(concurrency=1, name="s3")
    headers = stack.new_tenant()

    # When a job runs
    job = stack.submit(headers, {"prompt": "stored in s3", "params": {"size": "40x24", "seed": 5}})
    done = stack.wait(headers, job["id"])

    # Then its output is in the bucket under the job's key, and its URL is presigned
    assert done["status"] == "completed", done["error"]
    # (one folder per upload attempt: pipeline.adapters.storage.attempt_dir)
    [(key, size)] = listing(s3_endpoint, bucket).items()
    assert key.startswith(f"jobs/outputs/{job['id']}/") and key.endswith("/0.png")
    assert size == done["outputs"][0]["bytes"]
    assert "X-Amz-Signature=" in done["outputs"][0]["url"] and "X-Amz-Expires=120" in done["outputs"][0]["url"]
    assert open_image(requests.get(done["outputs"][0]["url"], timeout=10).content).size == (40, 24)
    response = stack.client.get(f"/v1/jobs/{job['id']}/outputs/0", headers=headers)
    assert response.status_code == 302 and response.headers["Location"].startswith(s3_endpoint)
    # and readiness checks the bucket
    assert stack.client.get("/readyz").status_code == 200
