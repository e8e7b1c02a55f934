"""The diffusers provider seen from outside a compute worker: its params are checked at
submit, the web process and a worker without a model never import torch, and a worker
without the model fails such a job with the setting to change."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import services

DIFFUSERS = {"prompt": "a lighthouse", "provider": "diffusers", "params": {"size": "64x64"}}


def with_params(body: dict = DIFFUSERS, **params) -> dict:
    return {**body, "params": {**body["params"], **params}}


@pytest.mark.parametrize("body, field, words", [
    (with_params(steps=0), "params.steps", "greater than or equal to 1"),
    (with_params(steps=151), "params.steps", "less than or equal to 150"),
    (with_params(steps=2.5), "params.steps", "integer"),
    (with_params(guidance=-1), "params.guidance", "greater than or equal to 0"),
    (with_params(guidance=31), "params.guidance", "less than or equal to 30"),
    (with_params(guidance="high"), "params.guidance", "number"),
    (with_params(negative_prompt=5), "params.negative_prompt", "string"),
    (with_params(negative_prompt="x" * 4001), "params.negative_prompt", "4000"),
    (with_params(strength=0.5), "params.strength", "only by operation edit"),
    (with_params({**DIFFUSERS, "operation": "edit", "inputs": {"images": ["upl_x"]}}, strength=1.5),
     "params.strength", "less than or equal to 1"),
    (with_params(size="60x64"), "params.size", "multiples of 8"),
    (with_params(sampler="ddim"), "params.sampler", "unknown field"),
    (with_params({**DIFFUSERS, "provider": "local"}, steps=4), "params.steps", "only by the diffusers provider"),
    (with_params({**DIFFUSERS, "provider": "openai"}, negative_prompt="fog"), "params.negative_prompt",
     "only by the diffusers provider"),
])
def test_bad_diffusers_params_are_refused_at_submit_naming_the_field(stack, tenant, body, field, words):
    response = stack.client.post("/v1/jobs", json=body, headers=tenant)
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "invalid_input" and field in error["fields"], error
    assert words in error["fields"][field], error


def test_a_worker_without_the_model_fails_the_job_saying_what_to_set(stack, tenant):
    job = stack.submit(tenant, {**with_params(steps=2, guidance=3, negative_prompt="fog"),
                                "budget": {"max_attempts": 1}})
    done = stack.wait(tenant, job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "provider_error", done["error"]
    assert "GENLINE_DIFFUSERS_MODEL" in done["error"]["message"]
    assert done["params"]["steps"] == 2 and done["params"]["negative_prompt"] == "fog"


PROBE = """
import json, sys
import web.app, pipeline.worker, pipeline.worker.tasks
from pipeline.adapters.providers import get_provider
get_provider("diffusers", None)
print(json.dumps(sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)))
"""


@pytest.mark.parametrize("model", ["", "/some/model/dir"])
def test_the_web_app_and_worker_entry_never_import_torch(tmp_path, model):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(services.ROOT), "GENLINE_VAR_DIR": str(tmp_path),
           "GENLINE_DIFFUSERS_MODEL": model}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=services.ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_diffusers_settings_are_read_and_checked_at_start():
    from pipeline.config import Config, ConfigError
    cfg = Config.from_env({"GENLINE_DIFFUSERS_MODEL": " stabilityai/sd-turbo ", "GENLINE_DIFFUSERS_DEVICE": "CUDA:1",
                           "GENLINE_DIFFUSERS_DTYPE": "bfloat16"})
    assert (cfg.diffusers_model, cfg.diffusers_device, cfg.diffusers_dtype) == ("stabilityai/sd-turbo", "cuda:1", "bfloat16")
    assert (Config.from_env({}).diffusers_model, Config.from_env({}).diffusers_device) == (None, "auto")
    for name, value in (("GENLINE_DIFFUSERS_DEVICE", "tpu"), ("GENLINE_DIFFUSERS_DTYPE", "int8")):
        with pytest.raises(ConfigError, match=name):
            Config.from_env({name: value})
