"""Which Celery queue a message goes to, and which worker kind may consume which queue.

genline runs two kinds of worker (docs/workers.md):

- the **I/O worker** (``-P gevent -c 1000``): many waiting jobs per process. It
  runs validate, upload, notify, webhook sends, the periodic tasks, and generate
  for *remote* providers (``openai``, ``http``), whose budgets
  ``pipeline.adapters.providers.httpcall`` enforces itself (cooperative deadline checks,
  a hard ``gevent.Timeout`` from the pool, the call killed on cancel);
- the **compute worker** (``-P prefork -c <GPUs>``): generate for providers that
  compute inside the worker (``local``, in-process models), whose budgets only
  Celery's soft and hard time limits can enforce, and those exist on prefork only.

Queues, by kind and priority (high before normal before low on both kinds)::

    io.finish                       upload and notify of a job that has generated
    io.high  io.normal  io.low      validate, remote generate, webhooks, periodic tasks
    compute.high compute.normal compute.low    in-worker generate

``io.finish`` is consumed first: once a job's image exists, storing it and
telling the client go ahead of every job still waiting to generate (a generated
image is never lost to a backlog). Generate for the compute kind never enters an
I/O queue, so a compute backlog never delays an upload either.
"""
from __future__ import annotations

from celery.concurrency.prefork import TaskPool as PreforkPool

from pipeline.adapters.providers import PROVIDER_CLASSES
from pipeline.core import priorities
from pipeline.core.lifecycle import Step
from pipeline.core.priorities import PRIORITIES

FINISH = "io.finish"
IO_QUEUES = (FINISH,) + tuple(f"io.{p}" for p in PRIORITIES)
COMPUTE_QUEUES = tuple(f"compute.{p}" for p in PRIORITIES)
ALL_QUEUES = (FINISH,) + tuple(q for p in PRIORITIES for q in (f"io.{p}", f"compute.{p}"))
"""Every queue, in the order one all-in-one worker consumes them (``-Q`` order is priority order)."""
DEFAULT_QUEUE = "io.normal"


def _priority(priority: str | None) -> str:
    return priorities.known(priority)


def runs_in_worker(provider: str | None) -> bool:
    """True when ``provider`` computes inside the worker process (its class says ``runs_in_worker``).

    Unknown providers count as in-worker: the compute kind enforces every
    budget, the I/O kind only those of providers that wait on the network.
    """
    cls = PROVIDER_CLASSES.get(provider or "local")
    return cls is None or bool(getattr(cls, "runs_in_worker", True))


def kind_of(step: Step, provider: str | None = None) -> str:
    """``"compute"`` for generate with an in-worker provider, else ``"io"``."""
    if Step(step) is Step.GENERATE and runs_in_worker(provider):
        return "compute"
    return "io"


def step_queue(step: Step, priority: str | None, provider: str | None = None) -> str:
    """The queue of a step message of a job with this priority and current provider."""
    step = Step(step)
    if step in (Step.UPLOAD, Step.NOTIFY):
        return FINISH
    return f"{kind_of(step, provider)}.{_priority(priority)}"


def priority_queues(priority: str | None) -> tuple[str, str]:
    """The queues of live work at a priority, of both kinds (a job in ``io.p`` now is in ``compute.p`` next)."""
    return f"io.{_priority(priority)}", f"compute.{_priority(priority)}"


def io_queue(priority: str | None) -> str:
    """The I/O queue of a job's other messages (webhook sends) at its priority."""
    return f"io.{_priority(priority)}"


def refusal(pool_cls: type, queues) -> str | None:
    """Why a worker on ``pool_cls`` must not consume ``queues``; None when it may.

    Only the prefork pool has Celery's soft and hard time limits (a signal and
    a kill of the child process); on any other pool an in-worker provider that
    never yields would run past its budget unseen.
    """
    if isinstance(pool_cls, type) and issubclass(pool_cls, PreforkPool):
        return None
    compute = sorted(q for q in queues if q in COMPUTE_QUEUES)
    if not compute:
        return None
    return (f"refusing to consume {', '.join(compute)} on the {getattr(pool_cls, '__module__', pool_cls)} pool: "
            "generate for in-worker providers (local, diffusers) needs Celery's soft and hard time limits, "
            "which only the prefork pool enforces. Run the compute worker with -P prefork "
            f"(-Q {','.join(COMPUTE_QUEUES)}), and this worker with -Q {','.join(IO_QUEUES)}.")
