"""The `genline` command for operators and users (DESIGN §9): click commands under Flask's ``FlaskGroup``.

Commands that use the database get the app from ``FlaskGroup``'s ``create_app``
(``_create_app`` below); ``dev``, ``bench``, ``submit`` and ``config`` never build
it. Flask's own commands come along: ``genline db upgrade`` (Flask-Migrate, the
same as the release step's ``flask --app web db upgrade``), ``genline routes``,
``genline shell``.

The service stack is imported at the top like any module's (the web app is
*built* only for the commands that use it); the bench alone is imported when
``genline bench`` runs, as it needs the dev extra's ``rich``.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from importlib import metadata
from types import SimpleNamespace

import click
from flask import current_app
from flask.cli import FlaskGroup
from flask_migrate.cli import db as migrate_commands
from kombu.exceptions import KombuError
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from pipeline.adapters import webhooks as hooks
from pipeline.cli_jobs import cancel_or_retry, failures, replay, replay_filter_given
from pipeline.config import Config, ConfigError, dev_env_defaults
from pipeline.core.lifecycle import JobStatus
from pipeline.service.representation import job_to_dict
from pipeline.store import jobs as job_store
from pipeline.store.models import Job, db
from pipeline.tooling import configdocs, devserver
from pipeline.tooling.bench import options as bench_options
from pipeline.worker.reaper import reap_once
from web import create_app
from web import keys as key_store


class CliError(Exception):
    """A one-line reason the command cannot run (printed as ``genline: …``, exit 1)."""


NO_DATABASE = ("run `flask --app web db upgrade` (the release step), or `make dev` in the repository root "
               "(the CLI then reads its var/dev.env), or set DATABASE_URL")
OWN_STACK = ("dev", "bench")
"""Commands that start a stack of their own, so never read the var/dev.env of another."""


def _create_app():
    """The Flask app for commands that use the database; a missing SQLite file is an error, never created."""
    cfg = Config.from_env()
    url = make_url(cfg.database_url)
    making_it = click.get_current_context().find_root().invoked_subcommand == "db"  # `genline db upgrade`
    if url.get_backend_name() == "sqlite" and url.database and not os.path.exists(url.database) and not making_it:
        raise CliError(f"no database at {url.database}: {NO_DATABASE}")
    return create_app(cfg)


def _database_error(exc) -> str:
    """One line for a database that cannot be reached or has no tables yet."""
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    missing_table = "no such table" in reason or ("relation" in reason and "does not exist" in reason)
    if isinstance(exc, (OperationalError, ProgrammingError)) and missing_table:
        return f"the database has no genline tables ({reason}): {NO_DATABASE}"
    return f"database error: {reason}"


def _config() -> Config:
    return current_app.extensions["genline.config"]


class GenlineGroup(FlaskGroup):
    """``FlaskGroup`` whose help never builds the app.

    FlaskGroup builds the app to list the commands it adds under ``app.cli``;
    genline's app adds none, and building it needs a valid configuration and a
    database that `genline --help` must not.
    """

    @functools.cached_property
    def plugins(self) -> set[str]:
        """Names of the commands packages add (``flask.commands`` entry points, e.g. Flask-Limiter's)."""
        return {entry.name for entry in metadata.entry_points(group="flask.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | self.plugins | {"db"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "db":
            return migrate_commands  # Flask-Migrate's (the app would add them)
        # An unknown name is a usage error at once, not a reason to build the app.
        return super().get_command(ctx, name) if name in self.list_commands(ctx) else None


@click.group(cls=GenlineGroup, create_app=_create_app, load_dotenv=False, add_version_option=False,
             help="genline: a job service for slow AI image generation")
@click.pass_context
def cli(ctx: click.Context) -> None:
    if ctx.invoked_subcommand not in OWN_STACK:
        # Beside `make dev`, use its stack (var/dev.env) for what the environment leaves unset:
        # the settings, and `genline submit`'s GENLINE_URL and GENLINE_API_KEY.
        os.environ.update(dev_env_defaults(os.environ))


@cli.command(with_appcontext=False, help="run web, both worker kinds, beat and Flower here with embedded defaults")
def dev() -> int:
    return devserver.run()


@cli.command(with_appcontext=False, help="measure genline: speed (default; submit, end-to-end, throughput and "
             "notify against raw Celery) or waiting (memory per job waiting on a slow provider)")
@bench_options
def bench(**options) -> int:
    from pipeline.tooling.bench.run import run  # lazy: optional genline[dev] (rich draws the bench's progress)
    return run(SimpleNamespace(**options))


# -- keys -------------------------------------------------------------------------------------------

@cli.group(help="create, list and revoke API keys")
def keys() -> None:
    pass


@keys.command("create")
@click.argument("tenant")
@click.option("--name")
@click.option("--rate-limit", help="Flask-Limiter syntax, e.g. 60/minute")
@click.option("--concurrency", type=int)
@click.option("--throttle", help="generate starts over time, Flask-Limiter syntax, e.g. 10/minute "
              "(overrides GENLINE_TENANT_THROTTLE; excess jobs wait queued)")
def keys_create(tenant: str, name: str | None, rate_limit: str | None, concurrency: int | None,
                throttle: str | None) -> int:
    try:
        row, secret = key_store.create_key(tenant, name or "", rate_limit, concurrency, throttle)
    except ValueError as exc:
        print(f"genline keys create: {exc}", file=sys.stderr)
        return 2
    print(f"key {row.id} for tenant {row.tenant_id}:\n{secret}\n(shown once; store it now)")
    return 0


@keys.command("list")
@click.option("--tenant")
def keys_list(tenant: str | None) -> int:
    for row in key_store.list_keys(tenant):
        state = "revoked" if row.revoked_at else "active"
        print(f"{row.id}  tenant={row.tenant_id}  prefix={row.prefix}…  {state}  name={row.name!r}")
    return 0


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> int:
    if not key_store.revoke_key(key_id):
        print(f"no active key {key_id}", file=sys.stderr)
        return 1
    print(f"revoked {key_id}")
    return 0


# -- submit -----------------------------------------------------------------------------------------

@cli.command(with_appcontext=False, help="submit a generation job through the API")
@click.argument("prompt")
@click.option("--wait", is_flag=True, help="hold until the job ends (up to 60 s)")
@click.option("--size", default="1024x1024", show_default=True)
@click.option("--provider", default="local", show_default=True)
@click.option("--url", help="API base URL (GENLINE_URL)")
@click.option("--key", help="API key (GENLINE_API_KEY)")
def submit(prompt: str, wait: bool, size: str, provider: str, url: str | None, key: str | None) -> int:
    """Submit through the API with the Python client (retries, idempotency key, typed errors)."""
    try:
        from genline_client import Genline, GenlineError  # lazy: optional (clients/python, its own package)
    except ImportError:
        print("genline submit needs the Python client: pip install -e ./clients/python", file=sys.stderr)
        return 2
    url = url or os.environ.get("GENLINE_URL", "http://127.0.0.1:8000")
    key = key or os.environ.get("GENLINE_API_KEY")
    if not key:
        print("set GENLINE_API_KEY or pass --key", file=sys.stderr)
        return 2
    with Genline(api_key=key, base_url=url) as client:
        try:
            job = client.jobs.create(prompt, size=size, provider=provider, wait=60 if wait else None)
        except GenlineError as exc:
            print(f"genline submit: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(job.raw, indent=2))
    return 0 if job.status != "failed" else 1


# -- jobs -------------------------------------------------------------------------------------------

@cli.group(help="list, show, cancel and retry jobs (operators: every tenant)")
def jobs() -> None:
    pass


@jobs.command("list", help="the newest jobs of every tenant, one line each (--status to filter)")
@click.option("--status")
@click.option("--limit", type=int, default=20, show_default=True)
def jobs_list(status: str | None, limit: int) -> int:
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(Job.status == status)
    for job in db.session.execute(stmt).scalars():
        held = f" held={job.held}" if job.held and job.status == JobStatus.QUEUED.value else ""
        print(f"{job.id}  {job.status:<10} {job.step or '-':<9} tenant={job.tenant_id} attempt={job.attempt}{held}")
    return 0


@jobs.command("show", help="one job as JSON, as the API shows it")
@click.argument("job_id")
def jobs_show(job_id: str) -> int:
    job = job_store.get(job_id)
    if job is None:
        print(f"no job {job_id}", file=sys.stderr)
        return 1
    cfg = _config()
    print(json.dumps(job_to_dict(job, cfg, cfg.public_url), indent=2))
    return 0


@jobs.command("cancel", help="cancel jobs by id, or every active job matching the filters")
@click.argument("job_ids", nargs=-1)
@click.option("--status", help="queued, processing or both (comma-separated)")
@click.option("--created-before", help="ISO 8601 time")
def jobs_cancel(job_ids: tuple[str, ...], status: str | None, created_before: str | None) -> int:
    return cancel_or_retry(SimpleNamespace(action="cancel", job_ids=list(job_ids), status=status,
                                           created_before=created_before))


@jobs.command("retry", help="resume failed or canceled jobs from the step that did not finish: by id, or "
              "replay every job matching the filters (docs/incidents.md)")
@click.argument("job_ids", nargs=-1)
@click.option("--status", help="failed, canceled or both (comma-separated; default both)")
@click.option("--error-code", help="error.code, e.g. provider_error")
@click.option("--provider")
@click.option("--operation", type=click.Choice(["generate", "edit", "inpaint"]))
@click.option("--step", type=click.Choice(["validate", "generate", "upload"]), help="the step the jobs failed in")
@click.option("--created-after", help="ISO 8601 time")
@click.option("--created-before", help="ISO 8601 time")
@click.option("--tenant", help="only this tenant's jobs (default: every tenant)")
@click.option("--limit", type=int, default=1000, show_default=True, help="jobs per page (at most 1000)")
@click.option("--cursor", help="go on after this job id (printed by the previous page)")
@click.option("--all", "all_", is_flag=True, help="go on page after page until nothing matches")
@click.option("--dry-run", is_flag=True, help="only list what would be replayed")
def jobs_retry(job_ids: tuple[str, ...], all_: bool, **filters) -> int:
    args = SimpleNamespace(action="retry", job_ids=list(job_ids), all=all_, **filters)
    if replay_filter_given(args) or not args.job_ids:
        return replay(args, _config().replay_rate)
    return cancel_or_retry(args)


@jobs.command("failures", help="failed jobs grouped by error code, provider and step")
@click.option("--hours", type=float, default=24.0, help="window: jobs created in the last N hours (default 24)")
@click.option("--created-after", help="ISO 8601 time (instead of --hours)")
@click.option("--created-before", help="ISO 8601 time")
@click.option("--tenant", help="only this tenant's jobs (default: every tenant)")
@click.option("--json", "as_json", is_flag=True, help="print the groups as JSON")
def jobs_failures(as_json: bool, **window) -> int:
    return failures(SimpleNamespace(json=as_json, **window))


# -- the rest ---------------------------------------------------------------------------------------

@cli.command(help="run the reaper once")
def reap() -> int:
    print(json.dumps(reap_once()))
    return 0


@cli.group(help="webhook signing")
def webhooks() -> None:
    pass


@webhooks.command("secret", help="print the whsec_ secret receivers verify signatures with")
@click.option("--tenant", help="a tenant with its own secret (default: the deployment's)")
def webhooks_secret(tenant: str | None) -> int:
    """Print the secret webhooks of a tenant (or of the deployment) are signed with."""
    print(hooks.secret_for(tenant or "", _config()))
    return 0


@cli.group(help="genline's settings")
def config() -> None:
    pass


@config.command("docs", with_appcontext=False,
                help="write the configuration reference (docs/configuration.md) from the settings class")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="write here instead of stdout")
@click.option("--check", is_flag=True, help="exit 1 if --output differs from what would be written")
def config_docs(output: str | None, check: bool) -> int:
    text = configdocs.render()
    if output is None:
        sys.stdout.write(text)
        return 0
    if check:
        current = open(output, encoding="utf-8").read() if os.path.exists(output) else ""
        if current != text:
            print(f"{output} is out of date: run `genline config docs -o {output}`", file=sys.stderr)
            return 1
        return 0
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `genline ARGV`; the exit status, with one line on stderr for any failure a user can fix."""
    try:
        code = cli.main(args=argv, prog_name="genline", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 1
    except ConfigError as exc:
        print(f"genline: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"genline: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        reason = _service_error(exc)
        if reason is None:
            raise
        print(f"genline: {reason}", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


def _service_error(exc: Exception) -> str | None:
    """One line for a database or broker that failed, or None for anything else (a bug: its traceback shows)."""
    if isinstance(exc, DBAPIError):
        return _database_error(exc)
    if isinstance(exc, (KombuError, RedisError)):
        return f"cannot reach the broker at {os.environ.get('REDIS_URL') or 'the default REDIS_URL'}: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
