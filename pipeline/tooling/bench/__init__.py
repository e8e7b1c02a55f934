"""`genline bench`: genline's speed measured against raw Celery and bare Flask in the same run.

``stack`` starts a stack on this machine, ``load`` drives the HTTP clients,
``baseline`` holds the raw Celery chain and bare Flask app, ``report`` renders
the figures and the targets, ``run`` ties the phases together.

Scenarios besides that one: ``waiting`` (``waiting``, with ``slowprovider``):
memory per job waiting on a slow remote provider, on the I/O worker beside the
prefork worker, and timeout and cancel latencies at that load.
"""
import click

OPTIONS = [
    (("--url",), dict(help="bench a running deployment at this base URL instead of starting a stack here")),
    (("--key",), dict(help="API key for --url (GENLINE_API_KEY)")),
    (("-c", "--workers"), dict(type=int, default=2, help="prefork worker processes (genline and baseline)")),
    (("--web-workers",), dict(type=int, default=2, help="gunicorn worker processes (genline and bare Flask)")),
    (("--database-url",), dict(help="Postgres URL for the stack started here (default: SQLite in a temp dir)")),
    (("--concurrency",), dict(type=int, default=32, help="concurrent clients for submit load")),
    (("--jobs",), dict(type=int, default=400, help="jobs in the submit / throughput phase")),
    (("--e2e-jobs",), dict(type=int, default=50, help="jobs, one at a time, per end-to-end series")),
    (("--real-size",), dict(default="512x512", help="size of the 'real' end-to-end series")),
    (("--real-jobs",), dict(type=int, default=10, help="jobs per real-size series")),
    (("--notify-jobs",), dict(type=int, default=40, help="jobs for notify latency")),
    (("--no-baseline",), dict(is_flag=True, help="skip the raw Celery and bare Flask baselines")),
    (("--json",), dict(is_flag=True, help="print the report as JSON")),
    (("--waiting-jobs",), dict(type=int, default=1000, help="waiting: jobs waiting at once on the I/O worker")),
    (("--prefork-jobs",), dict(type=int, default=8, help="waiting: jobs waiting at once on the prefork worker")),
    (("--provider-s",), dict(type=float, default=60.0, help="waiting: seconds the local provider takes to answer")),
    (("--plot",), dict(metavar="PNG", help="write the latency distributions here (needs matplotlib)")),
]
"""The options of `genline bench`: ``run`` reads them as attributes (``a.e2e_jobs``)."""

SCENARIOS = ("speed", "waiting")


def options(command):
    """Add the scenario and the options of `genline bench` to a click command."""
    for declarations, settings in reversed(OPTIONS):
        command = click.option(*declarations, show_default="default" in settings, **settings)(command)
    # speed (default): submit, end-to-end, throughput and notify against raw Celery;
    # waiting: memory per job waiting on a slow provider, I/O worker beside prefork (needs --database-url)
    return click.argument("scenario", required=False, default="speed", type=click.Choice(SCENARIOS))(command)
