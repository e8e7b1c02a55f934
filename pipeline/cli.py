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
    from pipeline.tooling import devserver
    return devserver.run()


def cmd_keys(args) -> int:
    from web import keys
    app = _app()
    with app.app_context():
        if args.action == "create":
            try:
                row, secret = keys.create_key(args.tenant, args.name or "", args.rate_limit, args.concurrency,
                                              args.throttle)
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
    from pipeline.service.representation import job_to_dict
    from pipeline.store import jobs
    app = _app()
    cfg = app.extensions["genline.config"]
    with app.app_context():
        if args.action == "list":
            from sqlalchemy import select

            from pipeline.store.models import Job, db
            stmt = select(Job).order_by(Job.id.desc()).limit(args.limit)
            if args.status:
                stmt = stmt.where(Job.status == args.status)
            for job in db.session.execute(stmt).scalars():
                held = f" held={job.held}" if job.held and job.status == "queued" else ""
                print(f"{job.id}  {job.status:<10} {job.step or '-':<9} tenant={job.tenant_id} attempt={job.attempt}{held}")
            return 0
        if args.action == "show":
            job = jobs.get(args.job_id)
            if job is None:
                print(f"no job {args.job_id}", file=sys.stderr)
                return 1
            print(json.dumps(job_to_dict(job, cfg, cfg.public_url), indent=2))
            return 0
        if args.action == "retry" and (_replay_filter_given(args) or not args.job_ids):
            return _replay(args)
        if args.action == "failures":
            return _failures(args)
        if args.action in ("cancel", "retry"):
            return _cancel_or_retry(args)
    print(f"genline jobs {args.action}: not available yet", file=sys.stderr)
    return 2


def _cancel_or_retry(args) -> int:
    """``genline jobs cancel|retry``: by ids, or (cancel) every active job matching --status/--created-before."""
    from pipeline.service import control
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
    failed = 0
    for job_id in args.job_ids:
        try:
            job = control.cancel(job_id) if args.action == "cancel" else control.retry(job_id, by="operator")
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


REPLAY_FILTERS = ("status", "error_code", "provider", "operation", "step", "created_after", "created_before", "tenant")


def _replay_filter_given(args) -> bool:
    return args.dry_run or any(getattr(args, name) for name in REPLAY_FILTERS)


def _when(value: str | None, option: str):
    """An ISO 8601 time (naive = UTC) from an option, or None; ValueError naming the option."""
    from datetime import datetime, timezone
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{option}: must be an ISO 8601 time like 2026-01-31T12:00:00Z, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _replay(args) -> int:
    """``genline jobs retry`` with filters: bulk replay, every tenant unless --tenant (a page per --limit)."""
    from pipeline.service import replay
    try:
        flt = replay.Filter(
            tenant=args.tenant, ids=args.job_ids or None, status=args.status.split(",") if args.status else None,
            error_code=args.error_code, provider=args.provider, operation=args.operation, step=args.step,
            created_after=_when(args.created_after, "--created-after"),
            created_before=_when(args.created_before, "--created-before"))
    except ValueError as exc:
        print(f"genline jobs retry: {exc}", file=sys.stderr)
        return 2
    bad = [s for s in flt.status or [] if s not in replay.REPLAYABLE]
    if bad or flt.is_empty():
        print("genline jobs retry: give job ids or filters (--error-code, --provider, --created-after, ...); "
              "--status takes failed and/or canceled", file=sys.stderr)
        return 2
    cursor, total = args.cursor, {"matched": 0, "requeued": 0}
    while True:
        result = replay.replay(flt, "operator", limit=args.limit, after=cursor, dry_run=args.dry_run)
        for job in result.jobs:
            state = "would replay" if args.dry_run else ("requeued" if job["requeued"] else "moved on, skipped")
            print(f"{job['id']}  tenant={job['tenant']}  {job['status']:<8} step={job['step']} "
                  f"error={job['error_code']} provider={job['provider']}  {state}")
        total["matched"] += result.matched
        total["requeued"] += result.requeued
        cursor = result.next_cursor
        if not (args.all and cursor):
            break
    verb = "would replay" if args.dry_run else "requeued"
    print(f"matched {total['matched']}, {verb} {total['matched'] if args.dry_run else total['requeued']}"
          + (f"; more remain: --cursor {cursor}" if cursor else ""))
    if not args.dry_run and total["requeued"]:
        from flask import current_app
        print(f"they enter the queues at {current_app.extensions['genline.config'].replay_rate} "
              "(GENLINE_REPLAY_RATE), behind live traffic")
    return 0


def _failures(args) -> int:
    """``genline jobs failures``: failed jobs of every tenant (or --tenant) grouped by error code, provider, step."""
    from datetime import timedelta

    from pipeline.service import replay
    from pipeline.store.models import utcnow
    try:
        after = (_when(args.created_after, "--created-after")
                 or (utcnow() - timedelta(hours=args.hours)).replace(microsecond=0))
        before = _when(args.created_before, "--created-before")
    except ValueError as exc:
        print(f"genline jobs failures: {exc}", file=sys.stderr)
        return 2
    groups = replay.failures(args.tenant, after, before)
    if args.json:
        print(json.dumps(groups, indent=2))
        return 0
    if not groups:
        print(f"no failed jobs created after {replay.iso(after)}")
        return 0
    print(f"{'count':>6}  {'error_code':<18} {'provider':<10} {'step':<9} last failure          latest message")
    for g in groups:
        print(f"{g['count']:>6}  {g['error_code'] or '-':<18} {g['provider'] or '-':<10} {g['step'] or '-':<9} "
              f"{g['last_failed_at'] or '-':<21} {(g['latest_message'] or '')[:80]}")
        options = " ".join(f"--{k.replace('_', '-')} {','.join(v) if isinstance(v, list) else v}"
                           for k, v in g["filter"].items())
        print(f"        replay: genline jobs retry {options} --dry-run")
    return 0


def cmd_webhooks(args) -> int:
    """Print the secret webhooks of a tenant (or of the deployment) are signed with."""
    from pipeline.adapters import webhooks
    app = _app()
    with app.app_context():
        print(webhooks.secret_for(args.tenant or "", app.extensions["genline.config"]))
    return 0


def cmd_reap(args) -> int:
    from pipeline.worker.reaper import reap_once
    app = _app()
    with app.app_context():
        print(json.dumps(reap_once()))
    return 0


def cmd_bench(args) -> int:
    from pipeline.tooling.bench.run import run
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
    create.add_argument("--throttle", help="generate starts over time, Flask-Limiter syntax, e.g. 10/minute "
                        "(overrides GENLINE_TENANT_THROTTLE; excess jobs wait queued)")
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
    jr = jobs_sub.add_parser("retry", help="resume failed or canceled jobs from the step that did not finish: "
                             "by id, or replay every job matching the filters (docs/incidents.md)")
    jr.add_argument("job_ids", nargs="*")
    jr.add_argument("--status", help="failed, canceled or both (comma-separated; default both)")
    jr.add_argument("--error-code", help="error.code, e.g. provider_error")
    jr.add_argument("--provider")
    jr.add_argument("--operation", choices=["generate", "edit", "inpaint"])
    jr.add_argument("--step", choices=["validate", "generate", "upload"], help="the step the jobs failed in")
    jr.add_argument("--created-after", help="ISO 8601 time")
    jr.add_argument("--created-before", help="ISO 8601 time")
    jr.add_argument("--tenant", help="only this tenant's jobs (default: every tenant)")
    jr.add_argument("--limit", type=int, default=1000, help="jobs per page (at most 1000)")
    jr.add_argument("--cursor", help="go on after this job id (printed by the previous page)")
    jr.add_argument("--all", action="store_true", help="go on page after page until nothing matches")
    jr.add_argument("--dry-run", action="store_true", help="only list what would be replayed")
    jf = jobs_sub.add_parser("failures", help="failed jobs grouped by error code, provider and step")
    jf.add_argument("--hours", type=float, default=24.0, help="window: jobs created in the last N hours (default 24)")
    jf.add_argument("--created-after", help="ISO 8601 time (instead of --hours)")
    jf.add_argument("--created-before", help="ISO 8601 time")
    jf.add_argument("--tenant", help="only this tenant's jobs (default: every tenant)")
    jf.add_argument("--json", action="store_true", help="print the groups as JSON")
    jobs_p.set_defaults(func=cmd_jobs)

    sub.add_parser("reap", help="run the reaper once").set_defaults(func=cmd_reap)

    hooks = sub.add_parser("webhooks", help="webhook signing")
    hooks_sub = hooks.add_subparsers(dest="action", required=True)
    secret = hooks_sub.add_parser("secret", help="print the whsec_ secret receivers verify signatures with")
    secret.add_argument("--tenant", help="a tenant with its own secret (default: the deployment's)")
    hooks.set_defaults(func=cmd_webhooks)

    from pipeline.tooling.bench import add_arguments
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
