"""The Celery app, built from the Flask app's config, running every task in its app context."""
from __future__ import annotations

import logging
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

from celery import Celery, Task
from celery.signals import celeryd_after_setup, worker_process_init

from pipeline.adapters import broker, redisurl, routing
from pipeline.adapters.providers import diffusers_model
from pipeline.adapters.redis_tls import ssl_options
from pipeline.worker import observe, slot, softlimit
from pipeline.worker.brokerguard import BrokerGuard

QUEUES = routing.ALL_QUEUES
log = logging.getLogger("genline.worker")

BEAT_MAX_LOOP_S = 2.0
"""Longest beat sleeps between ticks; a standby beat also polls the lock this often."""
BEAT_LOCK_TIMEOUT_S = 8
"""The active beat's Redis lock outlives it by at most this: a standby beat takes
over within BEAT_LOCK_TIMEOUT_S + BEAT_MAX_LOOP_S (10 s) of its death. The active
beat renews it every tick (at most BEAT_MAX_LOOP_S apart)."""

_CERT_REQS = {"none": ssl.CERT_NONE, "cert_none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
              "cert_optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED, "cert_required": ssl.CERT_REQUIRED}


def redis_ssl_options(url: str) -> dict | None:
    """TLS options of a ``rediss://`` URL for redis-py (None for a plain URL).

    Managed Redis (Heroku and others) hands out ``rediss://…?ssl_cert_reqs=none``
    with a self-signed certificate; the broker reads the query itself, and
    redbeat gets the same choice here (it would otherwise require a verified certificate).
    """
    if not url.startswith("rediss://"):
        return None
    query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    options = {"ssl_cert_reqs": _CERT_REQS.get(query.get("ssl_cert_reqs", "required").lower(), ssl.CERT_REQUIRED)}
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if query.get(key):
            options[key] = query[key]
    return options


def celery_settings(cfg) -> dict:
    """Celery settings derived from genline's config (DESIGN §9)."""
    # Redis re-delivers an unacknowledged message only after visibility_timeout.
    # It must outlast the longest a task may legitimately run (the hard limit of
    # the longest attempt, at most the deadline cap) or a long job runs twice;
    # lost work is re-dispatched sooner by the reaper from the job row.
    visibility = int(cfg.max_deadline_s + 600)
    sentinel = redisurl.is_sentinel(cfg.redis_url)
    settings = {
        # kombu's Redis (or Sentinel) transport, two public hooks (pipeline.adapters.broker)
        "broker_url": redisurl.broker_url(cfg.redis_url),
        "broker_transport": f"{broker.__name__}:{'SentinelTransport' if sentinel else 'Transport'}",
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": visibility, "queue_order_strategy": "priority",
                                     **redisurl.broker_transport_options(cfg.redis_url)},
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": routing.DEFAULT_QUEUE,
        "task_create_missing_queues": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        "broker_connection_timeout": 2,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # A cold shutdown (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT as on a PaaS)
        # first waits this long for running tasks, then cancels and requeues them.
        "worker_soft_shutdown_timeout": cfg.worker_soft_shutdown_s,
        # A pool process that loads a diffusers model at its start reports up only
        # once the model is on its device, which takes far longer than Celery's 4 s.
        "worker_proc_alive_timeout": cfg.diffusers_load_timeout_s if cfg.diffusers_model else 4.0,
        # Beat: celery-redbeat keeps the schedule and a lock in Redis, so any number
        # of beats may run (one sends, the others stand by) and none needs a file.
        "beat_scheduler": "pipeline.worker.beat:Scheduler",
        "beat_max_loop_interval": BEAT_MAX_LOOP_S,
        **redisurl.redbeat_settings(cfg.redis_url, socket_timeout=5, socket_connect_timeout=5),
        "redbeat_redis_use_ssl": redis_ssl_options(cfg.redis_url),
        "redbeat_key_prefix": "genline:beat:",
        "redbeat_lock_timeout": BEAT_LOCK_TIMEOUT_S,
        "beat_schedule": {
            # On the I/O kind's high queue so a pass runs as soon as any slot frees; a pass older
            # than a few intervals is stale and dropped rather than piling up while no
            # worker runs (they would all run at once afterwards).
            "reap": {"task": "genline.reap", "schedule": cfg.reaper_interval_s,
                     "options": {"queue": "io.high", "expires": max(5.0, 3 * cfg.reaper_interval_s)}},
            # Held jobs (replays, throttled starts) enter the queues from here (pipeline.service.admission).
            "admit": {"task": "genline.admit", "schedule": 1.0, "options": {"queue": "io.high", "expires": 5.0}},
            "retention": {"task": "genline.retention", "schedule": 3600.0},
            "webhook-retries": {"task": "genline.webhook_sweep", "schedule": 30.0},
        },
    }
    tls = ssl_options(cfg.redis_url)
    if tls:
        # rediss://…?ssl_cert_reqs=none: Flower's broker client reads broker_use_ssl,
        # not the URL's query (kombu and redis-py read the query themselves).
        settings["broker_use_ssl"] = tls
    return settings


def celery_init_app(app) -> Celery:
    """Make the Celery app for a Flask app; tasks run inside ``app.app_context()``."""
    cfg = app.extensions["genline.config"]

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask, include=["pipeline.worker.tasks", "pipeline.worker.hardlimit",
                                                            "pipeline.worker.maintenance", "pipeline.worker.webhook_tasks"])
    celery.conf.update(celery_settings(cfg))
    celery.steps["consumer"].add(BrokerGuard)  # wait out a full or read-only Redis
    celery.set_default()
    app.extensions["celery"] = celery
    observe.install(cfg)  # JSON logs, task counts, worker metrics (docs/observability.md)

    @worker_process_init.connect(weak=False)
    def _fresh_connections(**_):
        # A forked pool child must not share the parent's database sockets.
        with app.app_context():
            for engine in app.extensions["sqlalchemy"].engines.values():
                engine.dispose(close=False)
        # Then it opens its own before its first task, and hands step follow-ups to a thread
        # so that its slot takes the next message at once (pipeline.worker.slot).
        slot.enable(app)
        softlimit.enable(app)  # an attempt's end is written past a late soft time limit
        slot.warm_briefly(app)

    if cfg.diffusers_model:
        # No torch here: each pool process loads it with the model as it starts.
        diffusers_model.install(celery, cfg)

    @celeryd_after_setup.connect(weak=False)
    def _refuse_unenforceable_queues(sender=None, instance=None, **_):
        # A pool without Celery's time limits must not run in-worker generate:
        # its budgets would silently not hold (pipeline.adapters.routing.refusal).
        queues = [q.name for q in instance.app.amqp.queues.consume_from.values()]
        slot.consumes(queues)  # before the pool forks: its processes inherit it
        why = routing.refusal(instance.pool_cls, queues)
        if why:
            log.critical("%s", why)
            print(f"genline worker {sender}: {why}", file=sys.stderr, flush=True)
            raise SystemExit(2)

    return celery
