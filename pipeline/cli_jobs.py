"""The work behind `genline jobs cancel|retry|failures` (pipeline/cli.py parses the options)."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone

from pipeline.service import control
from pipeline.service import replay as replays
from pipeline.store.models import utcnow

REPLAY_FILTERS = ("status", "error_code", "provider", "operation", "step", "created_after", "created_before", "tenant")


def cancel_or_retry(args) -> int:
    """``genline jobs cancel|retry``: by ids, or (cancel) every active job matching --status/--created-before."""
    if args.action == "cancel" and not args.job_ids:
        if not (args.status or args.created_before):
            print("give job ids, or --status and/or --created-before", file=sys.stderr)
            return 2
        try:
            before = when(args.created_before, "--created-before")
        except ValueError as exc:
            print(f"genline jobs cancel: {exc}", file=sys.stderr)
            return 2
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


def replay_filter_given(args) -> bool:
    return args.dry_run or any(getattr(args, name) for name in REPLAY_FILTERS)


def when(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time (naive = UTC) from an option, or None; ValueError naming the option."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{option}: must be an ISO 8601 time like 2026-01-31T12:00:00Z, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def replay(args, replay_rate: str) -> int:
    """``genline jobs retry`` with filters: bulk replay, every tenant unless --tenant (a page per --limit)."""
    try:
        flt = replays.Filter(
            tenant=args.tenant, ids=args.job_ids or None, status=args.status.split(",") if args.status else None,
            error_code=args.error_code, provider=args.provider, operation=args.operation, step=args.step,
            created_after=when(args.created_after, "--created-after"),
            created_before=when(args.created_before, "--created-before"))
    except ValueError as exc:
        print(f"genline jobs retry: {exc}", file=sys.stderr)
        return 2
    bad = [s for s in flt.status or [] if s not in replays.REPLAYABLE]
    if bad or flt.is_empty():
        print("genline jobs retry: give job ids or filters (--error-code, --provider, --created-after, ...); "
              "--status takes failed and/or canceled", file=sys.stderr)
        return 2
    cursor, total = args.cursor, {"matched": 0, "requeued": 0}
    while True:
        result = replays.replay(flt, "operator", limit=args.limit, after=cursor, dry_run=args.dry_run)
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
        print(f"they enter the queues at {replay_rate} (GENLINE_REPLAY_RATE), behind live traffic")
    return 0


def failures(args) -> int:
    """``genline jobs failures``: failed jobs of every tenant (or --tenant) grouped by error code, provider, step."""
    try:
        after = (when(args.created_after, "--created-after")
                 or (utcnow() - timedelta(hours=args.hours)).replace(microsecond=0))
        before = when(args.created_before, "--created-before")
    except ValueError as exc:
        print(f"genline jobs failures: {exc}", file=sys.stderr)
        return 2
    groups = replays.failures(args.tenant, after, before)
    if args.json:
        print(json.dumps(groups, indent=2))
        return 0
    if not groups:
        print(f"no failed jobs created after {replays.iso(after)}")
        return 0
    print(f"{'count':>6}  {'error_code':<18} {'provider':<10} {'step':<9} last failure          latest message")
    for g in groups:
        print(f"{g['count']:>6}  {g['error_code'] or '-':<18} {g['provider'] or '-':<10} {g['step'] or '-':<9} "
              f"{g['last_failed_at'] or '-':<21} {(g['latest_message'] or '')[:80]}")
        options = " ".join(f"--{k.replace('_', '-')} {','.join(v) if isinstance(v, list) else v}"
                           for k, v in g["filter"].items())
        print(f"        replay: genline jobs retry {options} --dry-run")
    return 0
