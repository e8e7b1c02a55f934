"""The `genline` command for operators and users (DESIGN §9)."""
from __future__ import annotations

import argparse
import json
import os
import sys


class CliError(Exception):
    """A one-line reason the command cannot run (printed as ``genline: …``, exit 1)."""


NO_DATABASE = ("run `flask --app web db upgrade` (the release step), or `make dev` in the repository root "
               "(the CLI then reads its var/dev.env), or set DATABASE_URL")


def _app():
    """The Flask app for commands that use the database; a missing SQLite file is an error, never created."""
    from sqlalchemy.engine import make_url

    from pipeline.config import Config
    from web import create_app
    cfg = Config.from_env()
    url = make_url(cfg.database_url)
    if url.get_backend_name() == "sqlite" and url.database and not os.path.exists(url.database):
        raise CliError(f"no database at {url.database}: {NO_DATABASE}")
    return create_app(cfg)


def _database_error(exc) -> str:
    """One line for a database that cannot be reached or has no tables yet."""
    from sqlalchemy.exc import OperationalError, ProgrammingError
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    missing_table = "no such table" in reason or ("relation" in reason and "does not exist" in reason)
    if isinstance(exc, (OperationalError, ProgrammingError)) and missing_table:
        return f"the database has no genline tables ({reason}): {NO_DATABASE}"
    return f"database error: {reason}"


def cmd_dev(args) -> int:
    from pipeline import devserver
    return devserver.run()


def cmd_keys(args) -> int:
    from web import keys
    app = _app()
    with app.app_context():
        if args.action == "create":
            try:
                row, secret = keys.create_key(args.tenant, args.name or "", args.rate_limit, args.concurrency)
            except ValueError as exc:
                print(f"genline keys create: {exc}", file=sys.stderr)
                return 2
            print(f"key {row.id} for tenant {row.tenant_id}:\n{secret}\n(shown once; store it now)")
        elif args.action == "list":
            for row in keys.list_keys(args.tenant):
                state = "revoked" if row.revoked_at else "active"
                print(f"{row.id}  tenant={row.tenant_id}  prefix={row.prefix}…  {state}  name={row.name!r}")
        elif args.action == "revoke":
            if not keys.revoke_key(args.key_id):
                print(f"no active key {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
    return 0


def cmd_submit(args) -> int:
    """Submit through the API with the Python client (retries, idempotency key, typed errors)."""
    try:
        from genline_client import Genline, GenlineError
    except ImportError:
        print("genline submit needs the Python client: pip install -e ./clients/python", file=sys.stderr)
        return 2
    url = args.url or os.environ.get("GENLINE_URL", "http://127.0.0.1:8000")
    key = args.key or os.environ.get("GENLINE_API_KEY")
    if not key:
        print("set GENLINE_API_KEY or pass --key", file=sys.stderr)
        return 2
    with Genline(api_key=key, base_url=url) as client:
        try:
            job = client.jobs.create(args.prompt, size=args.size, provider=args.provider,
                                     wait=60 if args.wait else None)
        except GenlineError as exc:
            print(f"genline submit: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(job.raw, indent=2))
    return 0 if job.status != "failed" else 1


def cmd_jobs(args) -> int:
    from pipeline import jobs
    from pipeline.representation import job_to_dict
    app = _app()
    cfg = app.extensions["genline.config"]
    with app.app_context():
        if args.action == "list":
            from sqlalchemy import select

            from pipeline.models import Job, db
            stmt = select(Job).order_by(Job.id.desc()).limit(args.limit)
            if args.status:
                stmt = stmt.where(Job.status == args.status)
            for job in db.session.execute(stmt).scalars():
                print(f"{job.id}  {job.status:<10} {job.step or '-':<9} tenant={job.tenant_id} attempt={job.attempt}")
            return 0
        if args.action == "show":
            job = jobs.get(args.job_id)
            if job is None:
                print(f"no job {args.job_id}", file=sys.stderr)
                return 1
            print(json.dumps(job_to_dict(job, cfg, cfg.public_url), indent=2))
            return 0
        if args.action in ("cancel", "retry"):
            return _cancel_or_retry(args)
    print(f"genline jobs {args.action}: not available yet", file=sys.stderr)
    return 2


def _cancel_or_retry(args) -> int:
    """``genline jobs cancel|retry``: by ids, or (cancel) every active job matching --status/--created-before."""
    from pipeline import control
    if args.action == "cancel" and not args.job_ids:
        if not (args.status or args.created_before):
            print("give job ids, or --status and/or --created-before", file=sys.stderr)
            return 2
        from datetime import datetime, timezone
        before = None
        if args.created_before:
            before = datetime.fromisoformat(args.created_before.replace("Z", "+00:00"))
            before = before if before.tzinfo else before.replace(tzinfo=timezone.utc)
        statuses = args.status.split(",") if args.status else None
        done = control.cancel_many(None, statuses=statuses, created_before=before)
        print(f"canceled {len(done)} job(s)")
        return 0
    action = control.cancel if args.action == "cancel" else control.retry
    failed = 0
    for job_id in args.job_ids:
        try:
            job = action(job_id)
        except control.NotAllowed as exc:
            print(f"{job_id}: {exc.message}", file=sys.stderr)
            failed += 1
            continue
        if job is None:
            print(f"{job_id}: no such job", file=sys.stderr)
            failed += 1
            continue
        print(f"{job.id}  {job.status}  step={job.step}")
    return 1 if failed else 0


def cmd_webhooks(args) -> int:
    """Print the secret webhooks of a tenant (or of the deployment) are signed with."""
    from pipeline import webhooks
    app = _app()
    with app.app_context():
        print(webhooks.secret_for(args.tenant or "", app.extensions["genline.config"]))
    return 0


def cmd_reap(args) -> int:
    from pipeline.reaper import reap_once
    app = _app()
    with app.app_context():
        print(json.dumps(reap_once()))
    return 0


def cmd_bench(args) -> int:
    from pipeline.bench.run import run
    return run(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genline", description="genline: a job service for slow AI image generation")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("dev", help="run web, worker, beat and Flower here with embedded defaults").set_defaults(func=cmd_dev)

    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create")
    create.add_argument("tenant")
    create.add_argument("--name")
    create.add_argument("--rate-limit", help="Flask-Limiter syntax, e.g. 60/minute")
    create.add_argument("--concurrency", type=int)
    lst = keys_sub.add_parser("list")
    lst.add_argument("--tenant")
    revoke = keys_sub.add_parser("revoke")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    submit = sub.add_parser("submit", help="submit a generation job through the API")
    submit.add_argument("prompt")
    submit.add_argument("--wait", action="store_true", help="hold until the job ends (up to 60 s)")
    submit.add_argument("--size", default="1024x1024")
    submit.add_argument("--provider", default="local")
    submit.add_argument("--url", help="API base URL (GENLINE_URL)")
    submit.add_argument("--key", help="API key (GENLINE_API_KEY)")
    submit.set_defaults(func=cmd_submit)

    jobs_p = sub.add_parser("jobs", help="list, show, cancel and retry jobs (operators: every tenant)")
    jobs_sub = jobs_p.add_subparsers(dest="action", required=True)
    jl = jobs_sub.add_parser("list")
    jl.add_argument("--status")
    jl.add_argument("--limit", type=int, default=20)
    js = jobs_sub.add_parser("show")
    js.add_argument("job_id")
    jc = jobs_sub.add_parser("cancel", help="cancel jobs by id, or every active job matching the filters")
    jc.add_argument("job_ids", nargs="*")
    jc.add_argument("--status", help="queued, processing or both (comma-separated)")
    jc.add_argument("--created-before", help="ISO 8601 time")
    jr = jobs_sub.add_parser("retry", help="resume failed or canceled jobs from the step that did not finish")
    jr.add_argument("job_ids", nargs="+")
    jobs_p.set_defaults(func=cmd_jobs)

    sub.add_parser("reap", help="run the reaper once").set_defaults(func=cmd_reap)

    hooks = sub.add_parser("webhooks", help="webhook signing")
    hooks_sub = hooks.add_subparsers(dest="action", required=True)
    secret = hooks_sub.add_parser("secret", help="print the whsec_ secret receivers verify signatures with")
    secret.add_argument("--tenant", help="a tenant with its own secret (default: the deployment's)")
    hooks.set_defaults(func=cmd_webhooks)

    from pipeline.bench import add_arguments
    bench = sub.add_parser("bench", help="measure submit, end-to-end, throughput and notify against raw Celery")
    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    from kombu.exceptions import KombuError
    from redis.exceptions import RedisError
    from sqlalchemy.exc import DBAPIError

    from pipeline.config import ConfigError, dev_env_defaults
    args = parser().parse_args(argv)
    if args.command not in ("dev", "bench"):
        # Beside `make dev`, use its stack (var/dev.env) for what the environment leaves unset.
        os.environ.update(dev_env_defaults(os.environ))
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"genline: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"genline: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(f"genline: {_database_error(exc)}", file=sys.stderr)
        return 1
    except (KombuError, RedisError) as exc:
        print(f"genline: cannot reach the broker at {os.environ.get('REDIS_URL') or 'the default REDIS_URL'}: {exc}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
