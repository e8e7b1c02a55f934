"""The diffusers provider through the whole job pipeline: a private stack whose prefork
worker (-c 1) loads a tiny random-weight Stable Diffusion model from a local directory,
offline, on the CPU."""
from __future__ import annotations

import hashlib
import time

import pytest
from PIL import Image

from tests import diffusers_support, services
from tests.conftest import private_stack
from tests.images import data_uri, open_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    diffusers_support.require_extra()
    from tests import diffusers_tiny
    return diffusers_tiny.build(tmp_path_factory.mktemp("diffusers") / "tiny-sd")


@pytest.fixture(scope="module")
def dstack(pg_database, model_dir, tmp_path_factory, log_dir):
    with private_stack(tmp_path_factory.mktemp("dout"), log_dir, worker={"concurrency": 1, "name": "diffusers"},
                       GENLINE_DIFFUSERS_MODEL=str(model_dir), **diffusers_support.WORKER_ENV) as stack:
        stack.processes[0].wait_for_log("diffusers model loaded", 120)
        yield stack


def output_bytes(stack, headers, job: dict, n: int = 0) -> bytes:
    response = stack.client.get(f"/v1/jobs/{job['id']}/outputs/{n}", headers=headers)
    if response.status_code in (301, 302, 303, 307):
        response = stack.client.get(response.headers["Location"])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.data


def progress_steps(stack, job_id: str) -> list[tuple[int, int]]:
    return [(e["data"]["step"], e["data"]["steps"]) for e in stack.events(job_id)
            if e["type"] == "progress" and "step" in e["data"]]


def test_generate_makes_images_of_the_size_with_one_progress_event_per_step(dstack):
    headers = dstack.new_tenant()
    job = dstack.submit(headers, {"prompt": "a red cube", "provider": "diffusers",
                                  "params": {"size": "48x32", "n": 2, "seed": 5, "steps": 6, "guidance": 4.5,
                                             "negative_prompt": "blurry"}})
    done = dstack.wait(headers, job["id"])
    assert done["status"] == "completed", done["error"]
    assert (done["provider"], done["model"]) == ("diffusers", "tiny-sd")
    assert [(o["width"], o["height"]) for o in done["outputs"]] == [(48, 32), (48, 32)]
    assert open_image(output_bytes(dstack, headers, done, 1)).size == (48, 32)
    assert progress_steps(dstack, job["id"]) == [(i, 6) for i in range(1, 7)]


def test_the_same_seed_gives_the_same_bytes(dstack):
    headers = dstack.new_tenant()
    body = {"prompt": "a blue sphere", "provider": "diffusers", "params": {"size": "32x32", "seed": 42, "steps": 4}}
    first, second = (dstack.submit(headers, body) for _ in range(2))
    other = dstack.submit(headers, {**body, "params": {**body["params"], "seed": 43}})
    digests = []
    for job in (first, second, other):
        done = dstack.wait(headers, job["id"])
        assert done["status"] == "completed", done["error"]
        digests.append(hashlib.sha256(output_bytes(dstack, headers, done)).hexdigest())
        assert done["outputs"][0]["sha256"] == digests[-1]
    assert digests[0] == digests[1] != digests[2]


def test_edit_and_inpaint_come_back_at_the_input_size(dstack):
    headers = dstack.new_tenant()
    source = data_uri(Image.new("RGB", (50, 30), (200, 30, 30)))
    mask = Image.new("RGBA", (50, 30), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (10, 5, 40, 25))  # transparent: repaint
    edit = dstack.submit(headers, {"operation": "edit", "prompt": "make it green", "provider": "diffusers",
                                   "inputs": {"images": [source]},
                                   "params": {"strength": 0.5, "steps": 8, "seed": 1}})
    inpaint = dstack.submit(headers, {"operation": "inpaint", "prompt": "a window", "provider": "diffusers",
                                      "inputs": {"images": [source], "mask": data_uri(mask)},
                                      "params": {"steps": 3, "seed": 1}})
    for job, steps in ((edit, 4), (inpaint, 3)):  # img2img runs strength x steps of the schedule
        done = dstack.wait(headers, job["id"])
        assert done["status"] == "completed", done["error"]
        assert open_image(output_bytes(dstack, headers, done)).size == (50, 30)
        assert progress_steps(dstack, job["id"]) == [(i, steps) for i in range(1, steps + 1)]


def wait_stopped(stack, job_id: str, timeout: float = 30) -> dict:
    worker = stack.processes[0]
    services.wait_for(lambda: diffusers_support.stopped_line(worker.log(), job_id), timeout,
                      f"the diffusers run of {job_id} to stop")
    return diffusers_support.stopped_line(worker.log(), job_id)


def test_cancel_stops_the_run_within_one_step(dstack):
    # Given a long run that has reported a few steps
    headers = dstack.new_tenant()
    job = dstack.submit(headers, {"prompt": "a long one", "provider": "diffusers",
                                  "params": {"size": "128x128", "steps": 150, "seed": 3}})
    services.wait_for(lambda: len(progress_steps(dstack, job["id"])) >= 3, 60, "three steps")

    # When it is canceled
    canceled_at = time.monotonic()
    assert dstack.client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers).status_code == 202

    # Then the worker stops denoising at the next step boundary, long before the end
    stopped = wait_stopped(dstack, job["id"])
    stopped_after = time.monotonic() - canceled_at
    assert stopped["steps"] == 150 and stopped["stopped"] < 150, stopped
    if stopped["reason"] == "signal":  # the revoke's SIGUSR1 arrived after step `signalled`
        assert stopped["stopped"] - stopped["signalled"] <= 1, stopped
    else:  # the cooperative check saw the cancel first, at a step end
        assert stopped["reason"] == "canceled", stopped
    assert stopped_after < 5, stopped_after
    assert dstack.job(headers, job["id"])["status"] == "canceled"
    # And the worker is free for the next job
    quick = dstack.submit(headers, {"prompt": "next", "provider": "diffusers", "params": {"size": "32x32", "steps": 2}})
    assert dstack.wait(headers, quick["id"])["status"] == "completed"


def test_the_soft_time_limit_ends_the_attempt_as_timeout_at_a_step_boundary(dstack):
    headers = dstack.new_tenant()
    job = dstack.submit(headers, {"prompt": "too slow", "provider": "diffusers",
                                  "params": {"size": "128x128", "steps": 150, "seed": 4},
                                  "budget": {"timeout_s": 1, "deadline_s": 60, "max_attempts": 1}})
    done = dstack.wait(headers, job["id"], timeout=60)
    assert done["status"] == "failed" and done["error"]["code"] == "timeout", done["error"]
    stopped = wait_stopped(dstack, job["id"])  # stopped by the soft limit, not killed at the hard one
    assert stopped["stopped"] < stopped["steps"] == 150, stopped
    if stopped["reason"] == "signal":
        assert stopped["stopped"] - stopped["signalled"] <= 1, stopped


def test_a_model_name_other_than_the_loaded_one_is_invalid_input(dstack):
    headers = dstack.new_tenant()
    job = dstack.submit(headers, {"prompt": "x", "provider": "diffusers", "model": "other/model",
                                  "params": {"size": "32x32", "steps": 1}})
    done = dstack.wait(headers, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "invalid_input", done["error"]
    assert "tiny-sd" in done["error"]["message"]


def test_a_model_that_cannot_load_stops_the_worker_at_start(pg_database, tmp_path, log_dir):
    diffusers_support.require_extra()
    env = {"GENLINE_DIFFUSERS_MODEL": str(tmp_path / "no-such-model"), **diffusers_support.WORKER_ENV}
    with private_stack(tmp_path / "out", log_dir, **env) as stack:
        worker = services.Process("worker", services.worker_argv(concurrency=1, name="badmodel"), stack.env, log_dir).start()
        stack.processes.append(worker)
        services.wait_for(lambda: worker.proc.poll() is not None, 90, "the worker with a bad model to exit")
        assert worker.proc.returncode != 0
        log = worker.log()
        assert f"genline worker stopping: GENLINE_DIFFUSERS_MODEL={tmp_path / 'no-such-model'} could not be loaded" in log
        assert "save_pretrained" in log  # says what to change
