"""The Celery app, built from the Flask app's config, running every task in its app context."""
from __future__ import annotations

from celery import Celery, Task
from celery.signals import worker_process_init

QUEUES = ("high", "normal", "low")


def celery_settings(cfg) -> dict:
    """Celery settings derived from genline's config (DESIGN §9)."""
    # Redis re-delivers an unacknowledged message only after visibility_timeout.
    # It must outlast the longest a task may legitimately run (the hard limit of
    # the longest attempt, at most the deadline cap) or a long job runs twice;
    # lost work is re-dispatched sooner by the reaper from the job row.
    visibility = int(cfg.max_deadline_s + 600)
    return {
        "broker_url": cfg.redis_url,
        "broker_transport": "pipeline.broker:Transport",  # kombu's Redis transport, one client reused
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": visibility, "queue_order_strategy": "priority"},
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": "normal",
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
        "beat_schedule": {
            # On the high queue so a pass runs as soon as any slot frees; a pass older
            # than a few intervals is stale and dropped rather than piling up while no
            # worker runs (they would all run at once afterwards).
            "reap": {"task": "genline.reap", "schedule": cfg.reaper_interval_s,
                     "options": {"queue": "high", "expires": max(5.0, 3 * cfg.reaper_interval_s)}},
            # Held jobs (replays, throttled starts) enter the queues from here (pipeline.admission).
            "admit": {"task": "genline.admit", "schedule": 1.0, "options": {"queue": "high", "expires": 5.0}},
            "retention": {"task": "genline.retention", "schedule": 3600.0},
            "webhook-retries": {"task": "genline.webhook_sweep", "schedule": 30.0},
        },
    }


def celery_init_app(app) -> Celery:
    """Make the Celery app for a Flask app; tasks run inside ``app.app_context()``."""
    cfg = app.extensions["genline.config"]

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask, include=["pipeline.tasks", "pipeline.maintenance", "pipeline.webhook_tasks"])
    celery.conf.update(celery_settings(cfg))
    from pipeline.brokerguard import BrokerGuard
    celery.steps["consumer"].add(BrokerGuard)  # wait out a full or read-only Redis
    celery.set_default()
    app.extensions["celery"] = celery

    @worker_process_init.connect(weak=False)
    def _fresh_connections(**_):
        # A forked pool child must not share the parent's database sockets.
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose(close=False)

    if cfg.diffusers_model:
        from pipeline.providers import diffusers_model  # imports no torch until a pool process loads
        diffusers_model.install(celery, cfg)

    return celery
