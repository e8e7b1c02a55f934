"""POST /v1/uploads and input references (upload ids, https URLs) on the shared stack."""
from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image
from sqlalchemy import func, select

from pipeline.adapters.inputs import fetch_url
from pipeline.config import Config
from pipeline.core.errors import InvalidInput
from pipeline.store.models import Upload, db
from tests.fake_providers import ImageServer
from tests.images import open_image, png_bytes


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def post_file(stack, headers, data: bytes, name: str = "in.png", field: str = "file"):
    return stack.client.post("/v1/uploads", headers=headers, content_type="multipart/form-data",
                             data={field: (io.BytesIO(data), name)})


def stored_uploads(stack, tenant_headers) -> tuple[int, int]:
    """(rows of this tenant, files under the storage's uploads/ folder)."""
    with stack.app.app_context():
        rows = db.session.scalar(select(func.count()).select_from(Upload).where(Upload.tenant_id == tenant_headers["X-Tenant"]))
        db.session.rollback()
    folder = Path(unquote(urlsplit(stack.env["STORAGE_URL"]).path)) / "uploads"
    return rows, len(list(folder.glob("*"))) if folder.exists() else 0


@pytest.mark.parametrize("fmt, media_type", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_an_upload_is_decoded_stored_and_described(stack, tenant, fmt, media_type):
    data = encoded(Image.new("RGB", (33, 21), (9, 99, 199)), fmt)
    response = post_file(stack, tenant, data)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["id"].startswith("upl_")
    assert {k: body[k] for k in ("media_type", "width", "height", "bytes")} == \
        {"media_type": media_type, "width": 33, "height": 21, "bytes": len(data)}
    assert stored_uploads(stack, tenant)[0] == 1


def truncated_jpeg() -> bytes:
    data = encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    return data[: len(data) // 2]


BAD_FILES = [
    ("corrupt PNG", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 422, "file: is not a readable image"),
    ("truncated JPEG", truncated_jpeg(), 422, "file: is not a readable image"),
    ("text", b"hello, I am not a picture", 422, "file: is not a readable image"),
    ("GIF", encoded(Image.new("P", (8, 8)), "GIF"), 422, "file: is GIF; use PNG, JPEG or WebP"),
    ("BMP", encoded(Image.new("RGB", (8, 8)), "BMP"), 422, "file: is BMP; use PNG, JPEG or WebP"),
    ("too many pixels", encoded(Image.new("1", (5000, 4000)), "PNG"), 422,
     "file: is 5000x4000, more than the 16000000 pixels allowed (GENLINE_MAX_PIXELS)"),
    ("too many bytes", b"\x89PNG\r\n\x1a\n" + b"\x00" * (20 * 1024 * 1024), 413,
     "the file is larger than the 20971520 bytes allowed (GENLINE_MAX_UPLOAD_BYTES)"),
    ("empty", b"", 422, "file: is empty"),
]


@pytest.mark.parametrize("name, data, status, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_file_gets_its_message_and_nothing_is_stored(stack, tenant, name, data, status, message):
    # Given nothing stored for this tenant yet
    _, files_before = stored_uploads(stack, tenant)

    # When the bad file is uploaded
    response = post_file(stack, tenant, data)

    # Then it is refused as invalid_input with its own message, and no row or object is left
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"].startswith(message), error["message"]
    rows, files_after = stored_uploads(stack, tenant)
    assert rows == 0 and files_after == files_before


def test_requests_that_are_not_an_upload(stack, tenant):
    missing = post_file(stack, tenant, png_bytes(Image.new("RGB", (4, 4))), field="picture")
    assert missing.status_code == 422 and "field named 'file'" in missing.get_json()["error"]["message"]
    as_json = stack.client.post("/v1/uploads", headers=tenant, json={"file": "x"})
    assert as_json.status_code == 415 and as_json.get_json()["error"]["code"] == "unsupported_media_type"
    anonymous = post_file(stack, {}, png_bytes(Image.new("RGB", (4, 4))))
    assert anonymous.status_code == 401


def upload(stack, headers, image: Image.Image) -> str:
    response = post_file(stack, headers, png_bytes(image))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def test_inpaint_with_uploaded_image_and_mask(stack, tenant):
    # Given an uploaded image and a mask whose right half is transparent
    source = Image.new("RGB", (40, 30), (200, 30, 30))
    mask = Image.new("RGBA", (40, 30), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (20, 0, 40, 30))
    image_id, mask_id = upload(stack, tenant, source), upload(stack, tenant, mask)

    # When an inpaint job references them by id
    job = stack.submit(tenant, {"operation": "inpaint", "prompt": "a door", "params": {"seed": 2},
                                "inputs": {"images": [image_id], "mask": mask_id}})
    done = stack.wait(tenant, job["id"])

    # Then only the masked half changed
    assert done["status"] == "completed", done["error"]
    assert done["inputs"] == {"images": [image_id], "mask": mask_id}
    result = open_image(stack.client.get(f"/v1/jobs/{job['id']}/outputs/0", headers=tenant).data).convert("RGB")
    assert result.crop((0, 0, 20, 30)).tobytes() == source.crop((0, 0, 20, 30)).tobytes()
    assert result.crop((20, 0, 40, 30)).tobytes() != source.crop((20, 0, 40, 30)).tobytes()


def test_a_mask_of_another_size_fails_the_job_as_invalid_input(stack, tenant):
    image_id = upload(stack, tenant, Image.new("RGB", (40, 30)))
    mask_id = upload(stack, tenant, Image.new("RGBA", (10, 10)))
    job = stack.submit(tenant, {"operation": "inpaint", "prompt": "x", "inputs": {"images": [image_id], "mask": mask_id}})
    done = stack.wait(tenant, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "invalid_input"
    assert done["error"]["message"] == "inputs.mask is 10x10 but inputs.images[0] is 40x30"


def test_upload_ids_belong_to_their_tenant_and_bad_references_are_caught_at_submit(stack, tenant):
    other = stack.new_tenant()
    theirs = upload(stack, other, Image.new("RGB", (8, 8)))
    for ref, message in [(theirs, f"no upload '{theirs}'"), ("upl_nope", "no upload 'upl_nope'"),
                         ("ftp://x/y.png", "must be an upload id (upl_…), a data: URI or an https URL")]:
        response = stack.client.post("/v1/jobs", headers=tenant, json={"operation": "edit", "prompt": "x",
                                                                       "inputs": {"images": [ref]}})
        assert response.status_code == 422, response.get_data(as_text=True)
        error = response.get_json()["error"]
        assert error["code"] == "invalid_input" and message in error["fields"]["inputs.images[0]"]


@pytest.fixture(scope="module")
def image_server():
    s = ImageServer().start()
    yield s
    s.stop()


def test_url_inputs_are_fetched_by_the_worker(stack, tenant, image_server):
    # Given an input image served over HTTP on 127.0.0.1 (private addresses are allowed in tests)
    job = stack.submit(tenant, {"operation": "edit", "prompt": "from a url",
                                "inputs": {"images": [image_server.url + "/files/in.png"]}})
    done = stack.wait(tenant, job["id"])
    assert done["status"] == "completed", done["error"]
    assert (done["outputs"][0]["width"], done["outputs"][0]["height"]) == (8, 8)
    # A URL that does not answer 200 fails the job with what the server said
    bad = stack.wait(tenant, stack.submit(tenant, {"operation": "edit", "prompt": "x",
                                                   "inputs": {"images": [image_server.url + "/nothing"]}})["id"])
    assert bad["status"] == "failed" and bad["error"]["code"] == "invalid_input"
    assert "could not be fetched: the server answered 401" in bad["error"]["message"]


def test_url_inputs_follow_the_ssrf_rules_without_the_private_allowance(image_server):
    cfg = Config.from_env({"GENLINE_WEBHOOK_ALLOW_PRIVATE": "0", "GENLINE_MAX_UPLOAD_BYTES": "2048"})
    with pytest.raises(InvalidInput, match="must be an https URL"):
        fetch_url(image_server.url + "/files/a.png", "inputs.images[0]", cfg)
    with pytest.raises(InvalidInput, match="resolves to 127.0.0.1, a private, loopback or link-local address"):
        fetch_url("https://127.0.0.1:9/a.png", "inputs.images[0]", cfg)
    with pytest.raises(InvalidInput, match="cloud metadata"):
        fetch_url("https://metadata.google.internal/x", "inputs.images[0]", cfg)
    # and the size cap holds while reading
    private = Config.from_env({"GENLINE_WEBHOOK_ALLOW_PRIVATE": "1", "GENLINE_MAX_UPLOAD_BYTES": "1024"})
    assert open_image(fetch_url(image_server.url + "/files/a.png", "x", private)).size == (8, 8)
    with pytest.raises(InvalidInput, match="larger than the 1024 bytes allowed"):
        fetch_url(image_server.url + "/files/big.png", "x", private)


def test_uploads_may_be_larger_than_the_json_body_limit(stack, tenant):
    # Given a valid PNG of several MiB (GENLINE_MAX_BODY_BYTES is 1 MiB; uploads have their own cap)
    data = encoded(Image.effect_noise((1100, 1100), 100).convert("RGB"), "PNG", compress_level=0)
    assert len(data) > 3 * 1024 * 1024
    response = post_file(stack, tenant, data)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["bytes"] == len(data)
