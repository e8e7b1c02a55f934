"""`genline bench`: genline's speed measured against raw Celery and bare Flask in the same run.

``stack`` starts a stack on this machine, ``load`` drives the HTTP clients,
``baseline`` holds the raw Celery chain and bare Flask app, ``report`` renders
the figures and the targets, ``run`` ties the phases together.

Scenarios besides that one: ``waiting`` (``waiting``, with ``slowprovider``):
memory per job waiting on a slow remote provider, on the I/O worker beside the
prefork worker, and timeout and cancel latencies at that load.
"""

SCENARIOS = ("speed", "waiting")


def add_arguments(p) -> None:
    """The options of `genline bench`."""
    p.add_argument("scenario", nargs="?", default="speed", choices=SCENARIOS,
                   help="speed (default): submit, end-to-end, throughput and notify against raw Celery; "
                        "waiting: memory per job waiting on a slow provider, I/O worker beside prefork "
                        "(needs --database-url)")
    p.add_argument("--url", help="bench a running deployment at this base URL instead of starting a stack here")
    p.add_argument("--key", help="API key for --url (GENLINE_API_KEY)")
    p.add_argument("-c", "--workers", type=int, default=2, help="prefork worker processes (genline and baseline)")
    p.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (genline and bare Flask)")
    p.add_argument("--database-url", help="Postgres URL for the stack started here (default: SQLite in a temp dir)")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent clients for submit load")
    p.add_argument("--jobs", type=int, default=400, help="jobs in the submit / throughput phase")
    p.add_argument("--e2e-jobs", type=int, default=50, help="jobs, one at a time, per end-to-end series")
    p.add_argument("--real-size", default="512x512", help="size of the 'real' end-to-end series")
    p.add_argument("--real-jobs", type=int, default=10, help="jobs per real-size series")
    p.add_argument("--notify-jobs", type=int, default=40, help="jobs for notify latency")
    p.add_argument("--no-baseline", action="store_true", help="skip the raw Celery and bare Flask baselines")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--waiting-jobs", type=int, default=1000, help="waiting: jobs waiting at once on the I/O worker")
    p.add_argument("--prefork-jobs", type=int, default=8, help="waiting: jobs waiting at once on the prefork worker")
    p.add_argument("--provider-s", type=float, default=60.0, help="waiting: seconds the local provider takes to answer")
    p.add_argument("--plot", metavar="PNG", help="write the latency distributions here (needs matplotlib)")
