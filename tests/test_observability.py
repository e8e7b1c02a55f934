"""deploy/observability/: the alert rules and scrape config pass promtool, every alert
fires on the trouble it names (promtool test rules), and every query of the Grafana
dashboard runs on a real Prometheus scraping a real genline and Flower."""
from __future__ import annotations

import json
import re
import shutil
import sys
import time

import pytest
import requests
import yaml

from tests import services
from tests.services import wait_for

HERE = services.ROOT / "deploy" / "observability"
RULES = yaml.safe_load((HERE / "alerts.yml").read_text())
ALERTS = {r["alert"]: r for g in RULES["groups"] for r in g["rules"] if "alert" in r}
DASHBOARD = json.loads((HERE / "grafana-dashboard.json").read_text())


def _copy_with_secrets(dest):
    for name in ("alerts.yml", "prometheus.yml"):
        shutil.copy(HERE / name, dest / name)
    (dest / "secrets").mkdir()
    (dest / "secrets" / "genline-metrics-token").write_text("scrape-token\n")
    (dest / "secrets" / "flower-password").write_text("flower-pass\n")


def test_promtool_accepts_the_alert_rules_and_the_scrape_config(tmp_path):
    rules = services.promtool("check", "rules", str(HERE / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    _copy_with_secrets(tmp_path)  # the config names its secret files, which promtool checks exist
    config = services.promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS" in config.stdout and "alerts.yml" in config.stdout


def _case(name: str, series: dict, eval_time: str, labels: dict | None, summary: str | None) -> dict:
    """A ``promtool test rules`` test: ``series`` in; alert ``name`` expected (``labels``) or not (None)."""
    expected = []
    if labels is not None:
        rule = ALERTS[name]
        expected = [{"exp_labels": {**labels, **rule["labels"]},
                     "exp_annotations": {"summary": summary, "description": re.sub(
                         r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], rule["annotations"]["description"])}}]
    return {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [{"eval_time": eval_time, "alertname": name, "exp_alerts": expected}]}


CASES = [
    # One error code is a third of the ended jobs: it fires for that code, not for a rare one.
    ("failing", _case("GenlineJobsFailing", {
        'genline_jobs_finished_total{status="failed", error_code="provider_error", instance="w"}': "0+2x30",
        'genline_jobs_finished_total{status="failed", error_code="unsafe_content", instance="w"}': "0+0.1x30",
        'genline_jobs_finished_total{status="completed", error_code="none", instance="w"}': "0+4x30"},
        "20m", {"error_code": "provider_error"}, "provider_error: 32.79% of jobs end failed")),
    ("healthy", _case("GenlineJobsFailing", {
        'genline_jobs_finished_total{status="failed", error_code="provider_error", instance="w"}': "0+0.2x30",
        'genline_jobs_finished_total{status="completed", error_code="none", instance="w"}': "0+20x30"},
        "20m", None, None)),
    # compute.normal holds messages no worker takes (two web instances report it: one alert);
    # io.normal holds some too, but its tasks start.
    ("not consumed", _case("GenlineQueueNotConsumed", {
        'genline_queue_depth{queue="compute.normal", instance="web-1"}': "5x20",
        'genline_queue_depth{queue="compute.normal", instance="web-2"}': "5x20",
        'genline_queue_depth{queue="io.normal", instance="web-1"}': "3x20",
        'genline_tasks_started_total{queue="io.normal", instance="w"}': "0+10x20"},
        "10m", {"queue": "compute.normal"}, "no worker takes messages from compute.normal (5 waiting)")),
    # Jobs waited under 10 s for 40 minutes, then 60-120 s: the p90 is past a minute and rising.
    ("wait growing", _case("GenlineQueueWaitGrowing", {
        'genline_queue_wait_seconds_bucket{priority="normal", le="10"}': "0+10x40 400x40",
        'genline_queue_wait_seconds_bucket{priority="normal", le="60"}': "0+10x40 400x40",
        'genline_queue_wait_seconds_bucket{priority="normal", le="120"}': "0+10x40 400+10x40",
        'genline_queue_wait_seconds_bucket{priority="normal", le="+Inf"}': "0+10x40 400+10x40"},
        "55m", {"priority": "normal"}, "normal jobs wait 1m 54s (p90) before they start, and rising")),
    ("steady wait", _case("GenlineQueueWaitGrowing", {
        'genline_queue_wait_seconds_bucket{priority="normal", le="60"}': "0x80",
        'genline_queue_wait_seconds_bucket{priority="normal", le="120"}': "0+10x80",
        'genline_queue_wait_seconds_bucket{priority="normal", le="+Inf"}': "0+10x80"},
        "70m", None, None)),
    ("backlog", _case("GenlineQueueBacklogGrowing", {'genline_queue_depth{queue="io.low", instance="web-1"}': "0+1x60"},
                      "35m", {"queue": "io.low"}, "queue io.low has grown for 15 minutes")),
    ("reaper", _case("GenlineReaperRecoveringMany", {
        'genline_reaper_recoveries_total{kind="lease_expired", instance="w"}': "0+2x20",
        'genline_reaper_recoveries_total{kind="message_lost", instance="w"}': "0x20"},
        "16m", {"kind": "lease_expired"}, "the reaper recovered 30 jobs (lease_expired) in 15 minutes")),
    ("webhooks", _case("GenlineWebhookFailures", {
        'genline_webhook_deliveries_total{outcome="network_error"}': "0+3x30",
        'genline_webhook_deliveries_total{outcome="delivered"}': "0+1x30"},
        "25m", {}, "75% of webhook attempts fail")),
    ("no worker", _case("GenlineNoWorkerOnline", {'flower_worker_online{worker="io@a"}': "1x5 0x20"},
                        "12m", {}, "Flower sees no Celery worker online")),
    ("metrics down", _case("GenlineMetricsDown", {'up{job="genline-web", instance="web:8000"}': "0x20"},
                           "6m", {"job": "genline-web", "instance": "web:8000"},
                           "Prometheus cannot scrape genline's /metrics on web:8000")),
]


@pytest.mark.parametrize("name, case", CASES, ids=[c[0] for c in CASES])
def test_each_alert_fires_on_the_trouble_it_names(tmp_path, name, case):
    shutil.copy(HERE / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m",
                                                       "tests": [case]}))
    ran = services.promtool("test", "rules", str(tmp_path / "test.yml"))
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_every_alert_is_tested_and_the_dashboard_is_grafana_json():
    assert {c[1]["alert_rule_test"][0]["alertname"] for c in CASES} == set(ALERTS)
    assert DASHBOARD["uid"] and DASHBOARD["title"] == "genline"
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]


def _exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"].replace("$__rate_interval", "1m"))
            for p in DASHBOARD["panels"] if p["type"] != "row" for t in p["targets"]]


@pytest.mark.slow
def test_the_dashboards_queries_and_the_rules_run_on_a_real_prometheus_scraping_genline_and_flower(
        make_stack, tmp_path):
    # Given genline (gunicorn, a worker, beat) and Flower, and Prometheus with deploy/observability's config
    prometheus_bin = services.tool("prometheus", "prometheus")
    stack = make_stack(PROMETHEUS_MULTIPROC_DIR=tmp_path / "prom", GENLINE_METRICS_TOKEN="scrape-token")
    # With heartbeats (as the Procfile's workers run): Flower's per-worker gauges come from them
    argv = [a for a in services.worker_argv(concurrency=2, name="observed") if a != "--without-heartbeat"]
    worker = services.Process("worker", argv, stack.env, stack.log_dir).start()
    stack.processes.append(worker)
    worker.wait_for_log("ready.", 60)
    stack.start_beat()
    web, url = services.start_gunicorn(stack.env, stack.log_dir, workers=1)
    stack.processes.append(web)
    flower_port = services.free_port()
    # Flower with genline's environment, multiprocess directory included (as under honcho)
    flower_env = stack.env
    flower = services.Process("flower", [sys.executable, "-m", "celery", "-A", "pipeline.worker", "flower",
                                         "--address=127.0.0.1", f"--port={flower_port}",
                                         "--basic-auth=admin:flower-pass"], flower_env, stack.log_dir).start()
    stack.processes.append(flower)
    wait_for(lambda: requests.get(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=1).ok, 60, "flower")

    conf_dir = tmp_path / "prometheus"
    conf_dir.mkdir()
    _copy_with_secrets(conf_dir)
    config = yaml.safe_load((conf_dir / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    targets = {"genline-web": url.removeprefix("http://"), "flower": f"127.0.0.1:{flower_port}"}
    config["scrape_configs"] = [c for c in config["scrape_configs"] if c["job_name"] in targets]
    for scrape in config["scrape_configs"]:
        scrape["static_configs"] = [{"targets": [targets[scrape["job_name"]]]}]
    (conf_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_port = services.free_port()
    prom_url = f"http://127.0.0.1:{prom_port}"
    prometheus = services.Process("prometheus", [
        prometheus_bin, f"--config.file={conf_dir / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}"], stack.env, stack.log_dir).start()
    stack.processes.append(prometheus)
    wait_for(lambda: requests.get(f"{prom_url}/-/ready", timeout=1).ok, 60, "prometheus")

    def query(expr: str) -> list:
        answer = requests.get(f"{prom_url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    wait_for(lambda: {r["metric"]["job"] for r in query("up == 1")} == set(targets), 60, "both targets up")

    # When jobs run: one plain, one retried once, one refused
    headers = stack.new_tenant()
    bodies = [{"prompt": "charted", "params": {"size": "16x16"}},
              {"prompt": "retried", "params": {"size": "16x16", "simulate": {"fail_attempts": 1}},
               "budget": {"max_attempts": 2}},
              {"prompt": "refused", "params": {"size": "16x16", "simulate": {"fail_attempts": 1,
                                                                               "fail_code": "unsafe_content"}}}]
    ids = [requests.post(f"{url}/v1/jobs", json=b, headers=headers, timeout=10).json()["id"] for b in bodies]
    for job_id, status in zip(ids, ("completed", "completed", "failed")):
        wait_for(lambda: requests.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=5).json()["status"]
                 == status, 60, f"job {job_id} {status}")
    wait_for(lambda: query('sum(genline_jobs_finished_total{status="completed"}) >= 2')
             and query('sum(flower_events_total{type="task-succeeded"}) > 0'), 60, "the scrapes to show the jobs")
    # and a few more scrapes, so that rate() over the last minute has the jobs in it
    wait_for(lambda: [title for title, expr in _exprs() if not query(expr)] == ["Provider failovers per second"],
             60, "every dashboard query but the failovers' to have data")

    # Then every query of the dashboard is valid and has data, and Prometheus loaded the rules healthy
    empty = [(title, expr) for title, expr in _exprs() if not query(expr)]
    assert [title for title, _ in empty] == ["Provider failovers per second"], empty  # no job failed over
    assert query('sum(genline_step_retries_total{step="generate", error_code="provider_error"}) == 1')
    assert not query('{job="genline-web", __name__=~"flower_.*"}')  # each metric from its own scrape
    rules = requests.get(f"{prom_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = [r for g in rules for r in g["rules"]]
    assert len(loaded) == sum(len(g["rules"]) for g in RULES["groups"])
    assert all(r["health"] == "ok" for r in loaded), [(r["name"], r.get("lastError")) for r in loaded]

    # And deploy/observability/render_dashboard.py draws the same queries into a PNG (docs/img/dashboard.png's way)
    from deploy.observability import render_dashboard
    png = tmp_path / "dashboard.png"
    drawn = render_dashboard.render(DASHBOARD, prom_url, time.time() - 60, time.time(), 2, "1m", png)
    assert [t for t, n in drawn.items() if not n] == ["Provider failovers per second"], drawn
    assert set(drawn) == {title for title, _ in _exprs()}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
