"""Real data for the dashboard picture: a private stack, Prometheus, a few minutes of mixed traffic.

    .venv/bin/python -m tests.bench.dashboard_data [--minutes 4] [--out docs/img/dashboard.png]

Starts its own Redis and Postgres database, gunicorn, two prefork workers (with
heartbeats, for Flower), beat, Flower and Prometheus (deploy/observability's config and
rules, scraping every 2 s), all sharing one PROMETHEUS_MULTIPROC_DIR as under honcho.
Then, every few seconds, over HTTP: jobs that complete (some with a webhook to a local
receiver), jobs retried once, jobs that fail (unsafe_content, provider_error after their
attempts), jobs that fail over from ``local`` to ``openai`` (not configured here, so they
fail there), jobs canceled while generating, and webhooks to a dead port. Halfway, one
worker is SIGKILLed with jobs in hand (the reaper sends them again: lease expired, message lost)
and started again. At the end it draws deploy/observability/render_dashboard.py's PNG
from that Prometheus and tears everything down.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

from deploy.observability import render_dashboard
from tests import services
from tests.conftest import Stack, base_env
from tests.services import wait_for

HERE = services.ROOT / "deploy" / "observability"
SIZE = {"size": "16x16"}


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def start_prometheus(tmp: Path, targets: dict, env: dict, log_dir: Path) -> tuple[services.Process, str]:
    conf = tmp / "prometheus"
    (conf / "secrets").mkdir(parents=True)
    (conf / "secrets" / "genline-metrics-token").write_text("scrape-token\n")
    (conf / "secrets" / "flower-password").write_text("flower-pass\n")
    (conf / "alerts.yml").write_text((HERE / "alerts.yml").read_text())
    config = yaml.safe_load((HERE / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "2s", "evaluation_interval": "2s"}
    config["scrape_configs"] = [c for c in config["scrape_configs"] if c["job_name"] in targets]
    for scrape in config["scrape_configs"]:
        scrape["static_configs"] = [{"targets": [targets[scrape["job_name"]]]}]
    (conf / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = services.free_port()
    proc = services.Process("prometheus", [
        services.tool("prometheus", "prometheus"), f"--config.file={conf / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"], env, log_dir).start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 60, "prometheus")
    return proc, url


def heartbeat_worker(stack: Stack, name: str, concurrency: int) -> services.Process:
    argv = [a for a in services.worker_argv(concurrency=concurrency, name=name) if a != "--without-heartbeat"]
    worker = services.Process(f"worker-{name}", argv, stack.env, stack.log_dir).start()
    worker.wait_for_log("ready.", 60)
    return worker


def traffic_round(url: str, headers: dict, hook: str, dead: str, n: int) -> None:
    """One round of mixed jobs over HTTP; cancels one while it generates."""
    def post(body: dict) -> str | None:
        answer = requests.post(f"{url}/v1/jobs", json={"prompt": f"dash {n}", **body}, headers=headers, timeout=10)
        if answer.status_code != 202:
            print("submit refused:", answer.status_code, answer.text[:200], file=sys.stderr)
            return None
        return answer.json()["id"]

    for _ in range(random.randint(2, 4)):
        post({"params": {**SIZE, "simulate": {"latency_s": round(random.uniform(0.2, 1.5), 2)}},
              **({"webhook": {"url": hook}} if random.random() < 0.5 else {})})
    post({"params": {**SIZE, "simulate": {"fail_attempts": 1}}, "budget": {"max_attempts": 2}})
    if n % 2 == 0:
        post({"params": {**SIZE, "simulate": {"fail_attempts": 1, "fail_code": "unsafe_content"}}})
    if n % 3 == 0:
        post({"params": {**SIZE, "simulate": {"fail_attempts": 9}}, "budget": {"max_attempts": 2}})
        post({"provider": ["local", "openai"], "params": {**SIZE, "simulate": {"fail_attempts": 9}},
              "budget": {"max_attempts": 1}})
    if n % 4 == 1:
        post({"params": SIZE, "webhook": {"url": dead}})
    slow = post({"params": {**SIZE, "simulate": {"latency_s": 4}}})
    if slow and n % 2 == 1:
        time.sleep(1.5)
        requests.post(f"{url}/v1/jobs/{slow}/cancel", headers=headers, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4, help="how long to send traffic")
    parser.add_argument("--out", type=Path, default=services.ROOT / "docs" / "img" / "dashboard.png")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="genline-dash-"))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    redis = services.RedisServer().start()
    db_url = services.create_database()
    env = base_env(db_url, redis.url, (tmp / "out").as_uri(), PROMETHEUS_MULTIPROC_DIR=tmp / "prom",
                   GENLINE_METRICS_TOKEN="scrape-token", GENLINE_WEBHOOK_MAX_ATTEMPTS="3",
                   GENLINE_WEBHOOK_RETRY_BASE_S="2")
    (tmp / "prom").mkdir()
    stack = Stack(env, log_dir, redis)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        stack.migrate()
        stack.processes.append(heartbeat_worker(stack, "steady", 2))
        victim = heartbeat_worker(stack, "victim", 1)
        stack.processes.append(victim)
        stack.start_beat()
        web, url = services.start_gunicorn(stack.env, log_dir, workers=1)
        stack.processes.append(web)
        flower_port = services.free_port()
        stack.processes.append(services.Process("flower", [
            sys.executable, "-m", "celery", "-A", "pipeline.worker", "flower", "--address=127.0.0.1",
            f"--port={flower_port}", "--basic-auth=admin:flower-pass"], env, log_dir).start())
        wait_for(lambda: requests.get(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=1).ok, 60, "flower")
        prom, prom_url = start_prometheus(tmp, {"genline-web": url.removeprefix("http://"),
                                                "flower": f"127.0.0.1:{flower_port}"}, env, log_dir)
        stack.processes.append(prom)
        print(f"prometheus {prom_url}, logs {log_dir}", flush=True)
        started = time.time()
        headers = stack.new_tenant("dash")
        hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        dead = f"http://127.0.0.1:{services.free_port()}/nobody"
        n, killed = 0, False
        while time.time() - started < args.minutes * 60:
            traffic_round(url, headers, hook, dead, n)
            n += 1
            if not killed and time.time() - started > args.minutes * 30:
                # A whole worker dies holding jobs: their leases expire and the reaper sends them again.
                for _ in range(3):
                    requests.post(f"{url}/v1/jobs", json={"prompt": "held", "params": {
                        **SIZE, "simulate": {"latency_s": 6}}}, headers=headers, timeout=10)
                time.sleep(2.5)
                victim.kill_group()
                stack.processes.remove(victim)
                time.sleep(15)
                stack.processes.append(heartbeat_worker(stack, "victim", 1))
                killed = True
            time.sleep(random.uniform(2, 4))
        time.sleep(20)  # the last jobs end and a few more scrapes
        drawn = render_dashboard.render(json.loads(render_dashboard.DASHBOARD.read_text()),
                                        prom_url, started - 30, time.time(), 5, "30s", args.out)
        for title, count in drawn.items():
            print(f"{count:3d} series  {title}")
        print(f"wrote {args.out}")
    finally:
        receiver.shutdown()
        stack.stop()
        redis.stop()
        with stack.app.app_context():
            from pipeline.store.models import db
            db.engine.dispose()
        services.drop_database(db_url)
        if os.environ.get("KEEP") != "1":
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
