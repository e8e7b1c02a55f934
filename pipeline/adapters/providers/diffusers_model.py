"""The ``diffusers`` model of one compute worker process: loaded once, at the process's start.

A prefork pool child loads the pipeline named by ``GENLINE_DIFFUSERS_MODEL`` in
Celery's ``worker_process_init`` signal, before it takes any job, and keeps it
(on its device) for every job it runs. Text-to-image, image-to-image and
inpainting pipelines are derived from the one loaded set of components with
diffusers' ``from_pipe``, so the weights are loaded and held once.

A model that cannot load stops the whole worker at its start (the child asks
its main process for a shutdown that exits non-zero) with a message that
says what to change, instead of failing its first job.

Nothing here imports torch or diffusers until a worker process loads the model:
the web process, beat, and workers without ``GENLINE_DIFFUSERS_MODEL`` never do.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from celery.signals import worker_process_init

from pipeline.core.errors import InvalidInput, ProviderError

log = logging.getLogger("genline.diffusers")

OPERATIONS = ("generate", "edit", "inpaint")


class ModelLoadError(RuntimeError):
    """GENLINE_DIFFUSERS_MODEL could not be loaded; the message says what to change."""


@dataclass
class Loaded:
    """The model of this process: one pipeline per operation, sharing their components."""

    name: str
    source: str
    device: str
    dtype: str
    pipelines: dict = field(default_factory=dict)
    unusable: dict = field(default_factory=dict)  # operation -> why the model cannot do it
    load_s: float = 0.0

    def pipeline(self, operation: str):
        """The pipeline for ``operation``, or InvalidInput saying why this model has none."""
        found = self.pipelines.get(operation)
        if found is None:
            why = self.unusable.get(operation, "no pipeline")
            raise InvalidInput(f"the diffusers model {self.name} cannot {operation}: {why}")
        return found


_loaded: Loaded | None = None


def model_name(source: str) -> str:
    """The name jobs record: a hub id as given, a local directory by its last part."""
    path = Path(source)
    return path.name if path.is_dir() else source


def resolve_device(wanted: str) -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must be available."""
    import torch  # lazy: optional genline[diffusers]
    if wanted == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"GENLINE_DIFFUSERS_DEVICE={wanted} but this torch sees no CUDA device "
                             "(install a CUDA build of torch, or set GENLINE_DIFFUSERS_DEVICE=cpu or auto)")
    if wanted == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("GENLINE_DIFFUSERS_DEVICE=mps but MPS is not available here (set it to cpu or auto)")
    return wanted


def resolve_dtype(wanted: str, device: str):
    """``auto`` is float16 on a GPU and float32 on the CPU (half precision is slow or missing there)."""
    import torch  # lazy: optional genline[diffusers]
    if wanted == "auto":
        wanted = "float32" if device == "cpu" else "float16"
    return getattr(torch, wanted)


def load(source: str, device: str = "auto", dtype: str = "auto") -> Loaded:
    """Load ``source`` (a hub id or a local directory) and derive the three pipelines from it."""
    started = time.monotonic()
    try:
        # lazy: optional genline[diffusers]: its presence is checked here, with a clear message
        import torch  # noqa: F401
        from diffusers import (
            AutoPipelineForImage2Image,
            AutoPipelineForInpainting,
            AutoPipelineForText2Image,
            DiffusionPipeline,
        )
    except ImportError as exc:
        raise ModelLoadError(f"the diffusers provider needs its extra: pip install 'genline[diffusers]' ({exc})") from exc
    resolved = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved)
    try:
        # The class the model declares (text-to-image, or e.g. an inpainting model).
        base = DiffusionPipeline.from_pretrained(source, dtype=torch_dtype)
        base.to(resolved)
    except Exception as exc:  # noqa: BLE001 - any failure here is "this model cannot load"
        raise ModelLoadError(_load_hint(source, exc)) from exc
    loaded = Loaded(model_name(source), source, resolved, str(torch_dtype).removeprefix("torch."))
    for operation, auto in (("generate", AutoPipelineForText2Image), ("edit", AutoPipelineForImage2Image),
                            ("inpaint", AutoPipelineForInpainting)):
        try:
            pipe = auto.from_pipe(base)
        except Exception as exc:  # noqa: BLE001 - a model may do only some operations
            loaded.unusable[operation] = f"{exc.__class__.__name__}: {exc}"
            continue
        pipe.set_progress_bar_config(disable=True)  # progress goes to the job's events, not stderr
        loaded.pipelines[operation] = pipe
    if not loaded.pipelines:
        raise ModelLoadError(f"GENLINE_DIFFUSERS_MODEL={source} loaded, but no text-to-image, image-to-image or "
                             f"inpainting pipeline can be made from it: {loaded.unusable}")
    loaded.load_s = time.monotonic() - started
    return loaded


def _load_hint(source: str, exc: Exception) -> str:
    what = f"{exc.__class__.__name__}: {exc}".strip()
    if len(what) > 600:
        what = what[:600] + "…"
    if Path(source).is_dir():
        hint = ("the directory must hold a diffusers pipeline "
                "(model_index.json and its component folders, as save_pretrained writes)")
    elif source.startswith((".", "/", "~")):
        hint = ("no such directory; set GENLINE_DIFFUSERS_MODEL to a hub id (like stabilityai/sd-turbo) "
                "or a directory made by save_pretrained")
    else:
        hint = ("check the hub id, that it is downloaded (huggingface-cli download ID) when HF_HUB_OFFLINE=1 is set, "
                "and HF_TOKEN for a gated model")
    return f"GENLINE_DIFFUSERS_MODEL={source} could not be loaded: {what}. {hint}"


def current() -> Loaded:
    """This process's model; ProviderError when this worker process has none."""
    if _loaded is None:
        raise ProviderError("this worker has no diffusers model loaded: run the diffusers provider on a prefork "
                            "(compute) worker started with GENLINE_DIFFUSERS_MODEL set")
    return _loaded


def set_loaded(loaded: Loaded | None) -> None:
    """Install a loaded model for this process (the worker's start; in-process tests)."""
    global _loaded
    _loaded = loaded


def load_in_worker_process(cfg) -> None:
    """``worker_process_init``: load the model, or stop the worker with the reason."""
    try:
        loaded = load(cfg.diffusers_model, cfg.diffusers_device, cfg.diffusers_dtype)
    except ModelLoadError as exc:
        _stop_worker(str(exc))
        return
    set_loaded(loaded)
    log.info("diffusers model loaded model=%s device=%s dtype=%s operations=%s seconds=%.2f",
             loaded.name, loaded.device, loaded.dtype, ",".join(loaded.pipelines), loaded.load_s)


def _stop_worker(message: str) -> None:
    """Tell the operator why, then stop the main process so that it exits with status 1."""
    log.critical("genline worker stopping: %s", message)
    print(f"genline worker stopping: {message}", file=sys.stderr, flush=True)
    # SIGINT is Celery's Ctrl+C: a warm shutdown that exits with EX_FAILURE. SIGTERM
    # and SIGQUIT exit 0, which a supervisor would take for a clean stop.
    os.kill(os.getppid(), signal.SIGINT)


def install(celery_app, cfg) -> None:
    """Load the model in every pool process this worker starts (only when a model is configured)."""

    @worker_process_init.connect(weak=False)
    def _load_model(**_):
        load_in_worker_process(cfg)
