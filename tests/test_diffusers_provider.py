"""The diffusers provider in this process, against the tiny model: parameter mapping,
stopping at a step boundary, and the error mapping (NaN image, out of memory, a
model that cannot load or cannot do an operation)."""
from __future__ import annotations

import io
import logging
import time

import pytest
from PIL import Image

from pipeline.adapters.providers.base import AttemptContext, ProviderRequest
from pipeline.core.errors import InvalidInput, ProviderError, Timeout
from tests import diffusers_support


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    diffusers_support.require_extra()
    import torch
    torch.set_num_threads(1)
    from pipeline.adapters.providers import diffusers_model
    from tests import diffusers_tiny
    root = tmp_path_factory.mktemp("dmodels")
    found = {"tiny": diffusers_model.load(str(diffusers_tiny.build(root / "tiny")), "cpu", "auto"),
             "nan": diffusers_model.load(str(diffusers_tiny.build(root / "nan", nan_vae=True)), "cpu", "float32")}
    yield found
    diffusers_model.set_loaded(None)


@pytest.fixture
def provider(models):
    from pipeline.adapters.providers import diffusers_model
    from pipeline.adapters.providers.diffusers import DiffusersProvider
    diffusers_model.set_loaded(models["tiny"])
    return DiffusersProvider()


def context(seconds: float = 60.0, steps: list | None = None) -> AttemptContext:
    return AttemptContext(job_id="job_test", attempt=1, deadline=time.monotonic() + seconds,
                          on_step=(lambda done, total: steps.append((done, total))) if steps is not None else None)


def sizes(results) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(r.data)).size for r in results]


def test_auto_dtype_on_the_cpu_is_float32_and_every_operation_has_a_pipeline(models):
    tiny = models["tiny"]
    assert (tiny.name, tiny.device, tiny.dtype) == ("tiny", "cpu", "float32")
    assert set(tiny.pipelines) == {"generate", "edit", "inpaint"}
    # One set of weights: the derived pipelines share the loaded components.
    assert tiny.pipelines["edit"].unet is tiny.pipelines["generate"].unet is tiny.pipelines["inpaint"].unet


def test_params_map_onto_the_pipeline_and_each_step_is_reported(provider):
    steps = []
    results = provider.run(ProviderRequest("generate", "a cube", {"size": "40x24", "n": 3, "seed": 9, "steps": 4,
                                                                  "guidance": 2.0, "negative_prompt": "fog",
                                                                  "format": "webp"}), context(steps=steps))
    assert sizes(results) == [(40, 24)] * 3
    assert {r.media_type for r in results} == {"image/webp"} and results[0].model == "tiny"
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_seed_fixes_the_bytes(provider):
    request = ProviderRequest("generate", "a cube", {"size": "32x32", "seed": 11, "steps": 3})
    first, again = (provider.run(request, context())[0].data for _ in range(2))
    other = provider.run(ProviderRequest("generate", "a cube", {"size": "32x32", "seed": 12, "steps": 3}), context())[0].data
    assert first == again != other


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_the_attempts_time_running_out_interrupts_at_a_step_end(provider):
    steps, lines = [], Lines()
    request = ProviderRequest("generate", "slow", {"size": "64x64", "steps": 150, "seed": 1})

    def run_out_after_the_third_step(done, total):
        # The attempt's time runs out during step 3, whatever this machine's speed: a wall-clock
        # deadline raced the first step's length on a loaded machine.
        steps.append((done, total))
        if done == 3:
            ctx.deadline = time.monotonic()

    ctx = AttemptContext(job_id="job_test", attempt=1, deadline=time.monotonic() + 60,
                         on_step=run_out_after_the_third_step)
    logger = logging.getLogger("genline.diffusers")
    logger.addHandler(lines)
    # Another test's in-process migration (alembic's fileConfig) disables loggers made before it.
    # setLevel, not an assignment to .level: it also clears the loggers' isEnabledFor cache, which
    # an earlier test's run (at the default WARNING) filled with "INFO is off".
    level, disabled, logger.disabled = logger.level, logger.disabled, False
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(Timeout):
            provider.run(request, ctx)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
        logger.disabled = disabled
    assert steps == [(1, 150), (2, 150), (3, 150)]
    assert any("reason=timeout signalled_at_step=None stopped_at_step=4 steps=150" in line
               for line in lines.lines), lines.lines


def test_a_nan_image_is_a_provider_error_that_says_what_to_change(models):
    from pipeline.adapters.providers import diffusers_model
    from pipeline.adapters.providers.diffusers import DiffusersProvider
    diffusers_model.set_loaded(models["nan"])
    with pytest.raises(ProviderError) as caught:
        DiffusersProvider().run(ProviderRequest("generate", "x", {"size": "32x32", "steps": 2}), context())
    assert "NaN" in caught.value.message and "GENLINE_DIFFUSERS_DTYPE=float32" in caught.value.message


def test_out_of_memory_is_a_provider_error_that_says_what_to_change(models):
    import torch

    from pipeline.adapters.providers.diffusers import map_error
    request = ProviderRequest("generate", "x", {"size": "1024x1024", "n": 4})
    for exc in (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)")):
        error = map_error(exc, request, models["tiny"])
        assert error.code == "provider_error" and error.retryable
        assert "4 image(s) at 1024x1024" in error.message and "params.n" in error.message


def test_a_pipeline_that_refuses_the_request_is_invalid_input(provider):
    with pytest.raises(InvalidInput) as caught:  # the pipeline wants multiples of 8
        provider.run(ProviderRequest("generate", "x", {"size": "36x36", "steps": 1}), context())
    assert "divisible by 8" in caught.value.message


def test_a_model_that_cannot_load_says_what_to_set(tmp_path):
    diffusers_support.require_extra()
    from pipeline.adapters.providers.diffusers_model import ModelLoadError, load
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError) as caught:
        load(str(tmp_path / "empty"))
    assert f"GENLINE_DIFFUSERS_MODEL={tmp_path / 'empty'} could not be loaded" in str(caught.value)
    assert "model_index.json" in str(caught.value)


def test_no_loaded_model_is_a_provider_error_naming_the_setting():
    from pipeline.adapters.providers import diffusers_model
    from pipeline.adapters.providers.diffusers import DiffusersProvider
    diffusers_model.set_loaded(None)
    with pytest.raises(ProviderError) as caught:
        DiffusersProvider().run(ProviderRequest("generate", "x", {}), context())
    assert "GENLINE_DIFFUSERS_MODEL" in caught.value.message
