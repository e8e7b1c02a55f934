"""What genline adds to a diffusers run: a job against the same pipeline called directly.

    .venv/bin/python -m tests.bench.diffusers_overhead [--jobs 30] [--size 64x64] [--steps 20]

Builds the tests' tiny random-weight Stable Diffusion model, starts a private
stack (own Redis, own Postgres database, one prefork worker ``-c 1`` loading
the model, offline, one CPU thread) and loads the same model in this process.
Then, in turns, one job at a time and one direct call at a time (never both
at once):

- direct: ``pipe(prompt, width, height, num_inference_steps, generator)`` and
  the PNG encode, in this process, with no callback;
- provider: genline's provider code on the same request in this process
  (callback included, progress writes not), no job around it;
- genline: the same request as a job (validate -> generate -> upload -> notify),
  submitted and waited for with one held request (``?wait=60``, no polling);
  its ``timing.total_s`` is the server's own created -> completed time.

Prints the medians, genline's added time per job (median ``total_s`` minus
median direct), and the per-step callbacks' share: the time the worker spent in
``callback_on_step_end`` (progress event, cancel and time checks) over the rest
of its denoising run, as the worker's ``diffusers run finished`` line reports it.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from tests import diffusers_support, services
from tests.conftest import private_stack

FINISHED = re.compile(r"diffusers run finished job_id=(\S+) operation=\S+ steps=(\d+) seconds=([\d.]+) callback_s=([\d.]+)")


def direct_run(pipe, size: tuple[int, int], steps: int, seed: int) -> float:
    """Seconds for the pipeline alone, plus the same PNG encode genline does."""
    import torch
    started = time.perf_counter()
    output = pipe(prompt="a lighthouse at dusk", width=size[0], height=size[1], num_inference_steps=steps,
                  generator=torch.Generator("cpu").manual_seed(seed))
    output.images[0].save(io.BytesIO(), "PNG", compress_level=1)
    return time.perf_counter() - started


def provider_run(provider, size: str, steps: int, seed: int) -> float:
    """Seconds for genline's provider code in this process (callback included), with no job around it."""
    from pipeline.adapters.providers.base import AttemptContext, ProviderRequest
    request = ProviderRequest("generate", "a lighthouse at dusk", {"size": size, "steps": steps, "seed": seed})
    started = time.perf_counter()
    provider.run(request, AttemptContext(job_id="bench", attempt=1, deadline=time.monotonic() + 600,
                                         on_step=lambda done, total: None))
    return time.perf_counter() - started


def job_run(stack, headers, size: str, steps: int, seed: int) -> dict:
    job = stack.submit(headers, {"prompt": "a lighthouse at dusk", "provider": "diffusers",
                                 "params": {"size": size, "steps": steps, "seed": seed}})
    # A held request (?wait) rather than polling: polls would take CPU from the worker while it denoises.
    response = stack.client.get(f"/v1/jobs/{job['id']}?wait=60", headers=headers)
    done = response.get_json()
    assert done["status"] == "completed", done["error"]
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--size", default="64x64")
    parser.add_argument("--steps", type=int, default=20)
    a = parser.parse_args()
    import torch

    from pipeline.adapters.providers import diffusers_model
    from tests import diffusers_tiny
    torch.set_num_threads(1)  # as the worker (OMP_NUM_THREADS=1)
    size = tuple(int(side) for side in a.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="genline-diffusers-bench-"))
    model = diffusers_tiny.build(root / "tiny-sd")
    loaded = diffusers_model.load(str(model), "cpu", "float32")
    diffusers_model.set_loaded(loaded)
    pipe = loaded.pipeline("generate")
    from pipeline.adapters.providers.diffusers import DiffusersProvider
    provider = DiffusersProvider()
    services.ensure_postgres()
    with private_stack(root / "out", root, worker={"concurrency": 1, "name": "bench-diffusers"},
                       GENLINE_DIFFUSERS_MODEL=str(model), **diffusers_support.WORKER_ENV) as stack:
        worker = stack.processes[0]
        worker.wait_for_log("diffusers model loaded", 120)
        headers = stack.new_tenant()
        for seed in range(3):  # warm-up: first runs allocate and fill caches on both sides
            direct_run(pipe, size, a.steps, seed)
            job_run(stack, headers, a.size, a.steps, seed)
        direct, in_process, totals, generate, ids = [], [], [], [], []
        for seed in range(a.jobs):
            direct.append(direct_run(pipe, size, a.steps, seed))
            in_process.append(provider_run(provider, a.size, a.steps, seed))
            done = job_run(stack, headers, a.size, a.steps, seed)
            totals.append(done["timing"]["total_s"])
            generate.append(done["timing"]["generate_s"])
            ids.append(done["id"])
        time.sleep(0.5)
        runs = {m[1]: (int(m[2]), float(m[3]), float(m[4])) for m in FINISHED.finditer(worker.log())}
    shares = [cb / (seconds - cb) for job_id, (steps, seconds, cb) in runs.items() if job_id in ids]
    per_step_ms = [cb / steps * 1000 for job_id, (steps, seconds, cb) in runs.items() if job_id in ids]
    in_worker = [seconds for job_id, (steps, seconds, cb) in runs.items() if job_id in ids]
    med = statistics.median
    report = {
        "jobs": a.jobs, "size": a.size, "steps": a.steps,
        "direct_ms_median": round(med(direct) * 1000, 1),
        "provider_in_this_process_ms_median": round(med(in_process) * 1000, 1),
        "job_total_ms_median": round(med(totals) * 1000, 1),
        "job_generate_step_ms_median": round(med(generate) * 1000, 1),
        "worker_pipeline_call_ms_median": round(med(in_worker) * 1000, 1),
        "added_ms_per_job_median": round((med(totals) - med(direct)) * 1000, 1),
        "callback_ms_per_step_median": round(med(per_step_ms), 3),
        "callback_share_of_denoising_median_pct": round(med(shares) * 100, 2),
        "callback_share_of_denoising_max_pct": round(max(shares) * 100, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
