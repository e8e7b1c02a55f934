"""gunicorn settings for the Procfile's web process.

gevent workers: every Server-Sent Events stream and long-poll holds a request
open for up to minutes, so the web process must hold many of them at once
without a thread or process per stream.
"""
import os

if os.environ.get("GUNICORN_WORKER_CLASS", "gevent") == "gevent":
    # Patch before anything below imports ssl (pipeline.config pulls in urllib3):
    # gevent patching ssl after its import makes every new TLS context recurse
    # forever (gevent/gevent#1016), so each S3 output URL the web signed was a 500.
    from gevent import monkey
    monkey.patch_all()

from pipeline.config import from_env_or_exit  # noqa: E402 - after gevent's patching, see above

# Check the environment before any worker forks: a refused configuration
# (GENLINE_PRODUCTION=1 with a placeholder SECRET_KEY, …) stops gunicorn with
# one line naming the variable, instead of workers failing to boot one by one.
_cfg = from_env_or_exit()

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "2000"))
timeout = 120
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
# The path without its query string (%(U)s, not the request line %(r)s) and no
# Referer: job URLs carry read tokens in ``?token=``, which must not reach logs.
# /files/<token> paths are credentials too: pipeline.adapters.accesslog redacts them (post_fork).
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%(a)s"'
limit_request_field_size = 8190
limit_request_fields = 100
if _cfg.log_format == "json":
    # GENLINE_LOG_FORMAT=json: gunicorn's own lines and the access lines are JSON objects too.
    import logging

    from pipeline.adapters.logs import gunicorn_config
    logconfig_dict = gunicorn_config()
    logging.captureWarnings(True)  # a warning at a worker's start (gevent's patching) is a JSON line too


def on_starting(server):
    from pipeline.adapters import accesslog
    accesslog.install()


def post_fork(server, worker):
    from pipeline.adapters import accesslog
    accesslog.install()  # the access lines are written by the workers
    # psycopg2 blocks the whole process under gevent unless made cooperative.
    if worker_class == "gevent":
        from psycogreen.gevent import patch_psycopg
        patch_psycopg()


def child_exit(server, worker):
    # prometheus_client's multiprocess mode: a worker that exited keeps its
    # counters in PROMETHEUS_MULTIPROC_DIR (they must not go down); its live gauges are dropped.
    from pipeline.adapters import metrics
    metrics.process_dead(worker.pid)
