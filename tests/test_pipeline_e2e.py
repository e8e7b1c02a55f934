"""End to end on real services: submit -> the chain runs in a prefork worker -> an image."""
from __future__ import annotations

from PIL import Image, ImageChops

from tests.images import data_uri, open_image


def fetch_output(stack, headers, job, n=0):
    response = stack.client.get(f"/v1/jobs/{job['id']}/outputs/{n}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def test_generate_completes_with_a_png_of_the_requested_size(stack, tenant):
    # Given a generate job of a non-square size
    job = stack.submit(tenant, {"prompt": "a red fox", "params": {"size": "96x64", "seed": 7}})
    assert job["status"] == "queued" and job["id"].startswith("job_")

    # When the worker has run it
    done = stack.wait(tenant, job["id"])

    # Then it is completed with one PNG output of that size
    assert done["status"] == "completed", done["error"]
    assert done["step"] == "notify" and done["progress"] == 1.0
    out = done["outputs"][0]
    assert (out["width"], out["height"], out["media_type"]) == (96, 64, "image/png")
    image = open_image(fetch_output(stack, tenant, done).data)
    assert image.format == "PNG" and image.size == (96, 64)
    assert set(done["timing"]) >= {"queued_s", "generate_s", "upload_s", "total_s"}
    assert done["timing"]["generate_s"] is not None
    types = [e["type"] for e in stack.events(done["id"])]
    assert types[0] == "queued" and types[-1] == "completed"
    assert [e["data"]["step"] for e in stack.events(done["id"]) if e["type"] == "started"] == ["validate", "generate", "upload"]


def test_same_prompt_and_seed_give_the_same_picture(stack, tenant):
    body = {"prompt": "determinism", "params": {"size": "32x32", "seed": 11}}
    a = stack.wait(tenant, stack.submit(tenant, body)["id"])
    b = stack.wait(tenant, stack.submit(tenant, body)["id"])
    assert a["outputs"][0]["sha256"] == b["outputs"][0]["sha256"]


def test_edit_keeps_the_size_and_changes_the_picture(stack, tenant):
    source = Image.new("RGB", (40, 30), (10, 200, 30))
    job = stack.submit(tenant, {"operation": "edit", "prompt": "make it blue",
                                "inputs": {"images": [data_uri(source)]}, "params": {"seed": 1}})
    done = stack.wait(tenant, job["id"])
    assert done["status"] == "completed", done["error"]
    edited = open_image(fetch_output(stack, tenant, done).data).convert("RGB")
    assert edited.size == source.size
    assert ImageChops.difference(edited, source).getbbox() is not None


def test_inpaint_changes_only_the_masked_region(stack, tenant):
    # Given an image and a mask whose right half is transparent (repaint there)
    source = Image.new("RGB", (64, 48), (200, 20, 20))
    mask = Image.new("RGBA", (64, 48), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (32, 0, 64, 48))
    job = stack.submit(tenant, {"operation": "inpaint", "prompt": "a window",
                                "inputs": {"images": [data_uri(source)], "mask": data_uri(mask)},
                                "params": {"seed": 3}})
    done = stack.wait(tenant, job["id"])
    assert done["status"] == "completed", done["error"]
    result = open_image(fetch_output(stack, tenant, done).data).convert("RGB")
    # Then the left half equals the source pixel for pixel, and the right half changed
    assert ImageChops.difference(result.crop((0, 0, 32, 48)), source.crop((0, 0, 32, 48))).getbbox() is None
    assert ImageChops.difference(result.crop((32, 0, 64, 48)), source.crop((32, 0, 64, 48))).getbbox() is not None


def test_generate_on_sqlite(sqlite_stack):
    headers = sqlite_stack.new_tenant()
    job = sqlite_stack.submit(headers, {"prompt": "on sqlite", "params": {"size": "48x48", "n": 2}})
    done = sqlite_stack.wait(headers, job["id"])
    assert done["status"] == "completed", done["error"]
    assert [(o["width"], o["height"]) for o in done["outputs"]] == [(48, 48), (48, 48)]
    for n in range(2):
        response = sqlite_stack.client.get(f"/v1/jobs/{job['id']}/outputs/{n}", headers=headers)
        assert open_image(response.data).size == (48, 48)


def _staged_rows(stack, job_id: str) -> int:
    from sqlalchemy import func, select

    from pipeline.store.models import StagedOutput, db
    with stack.app.app_context():
        count = db.session.execute(select(func.count()).select_from(StagedOutput)
                                   .where(StagedOutput.job_id == job_id)).scalar_one()
        db.session.rollback()
    return count


def _completes_and_clears_its_staged_images(stack, headers):
    # Given a job whose generate stages two images for upload
    job = stack.submit(headers, {"prompt": "two of them", "params": {"size": "16x16", "n": 2}})
    # When it completes
    done = stack.wait(headers, job["id"])
    # Then both were uploaded and nothing stays staged (upload's end removed them)
    assert done["status"] == "completed", done["error"]
    assert len(done["outputs"]) == 2
    assert _staged_rows(stack, job["id"]) == 0


def test_upload_end_clears_the_staged_images_on_postgres(stack, tenant):
    _completes_and_clears_its_staged_images(stack, tenant)


def test_upload_end_clears_the_staged_images_on_sqlite(sqlite_stack):
    with sqlite_stack.app.app_context():
        headers = sqlite_stack.new_tenant("staged")
    _completes_and_clears_its_staged_images(sqlite_stack, headers)


def test_the_worker_logs_each_step_end_with_job_step_attempt_and_status(stack, tenant):
    # Given a job the shared worker has run
    done = stack.wait(tenant, stack.submit(tenant, {"prompt": "logged", "params": {"size": "16x16"}})["id"])
    assert done["status"] == "completed", done["error"]
    worker = stack.processes[0]
    # Then each step's end is one key=value line with the job, step, attempt (generate's
    # count: validate runs before the first) and status
    for step, attempt, status in (("validate", 0, "queued"), ("generate", 1, "processing"), ("upload", 1, "completed")):
        worker.wait_for_log(f"step finished job_id={done['id']} step={step} attempt={attempt} status={status} ", timeout=5)
