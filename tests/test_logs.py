"""GENLINE_LOG_FORMAT=json: one JSON object per stderr line from web, worker and beat;
key=value text stays the default."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import pytest
import requests

from pipeline.adapters import logs
from tests import services
from tests.services import wait_for

KEYS = {"ts", "level", "logger", "message", "job_id", "step", "attempt", "status", "trace_id"}


def _record(message: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("genline.steps", logging.INFO, __file__, 1, message, args, exc_info)


def test_a_json_line_names_the_job_from_its_message_and_from_the_running_step():
    formatter = logs.JsonFormatter()
    # A line about a job carries its key=value pairs as fields, numbers as numbers
    line = json.loads(formatter.format(_record("step finished job_id=%s step=%s attempt=%s status=%s seconds=%.3f",
                                               "job_1", "generate", 2, "processing", 1.5)))
    assert KEYS <= set(line)
    assert (line["job_id"], line["step"], line["attempt"], line["status"]) == ("job_1", "generate", 2, "processing")
    assert line["trace_id"] is None and line["level"] == "INFO" and line["logger"] == "genline.steps"
    # A line logged while a step runs names that step's job even when its message does not
    with logs.job_context(job_id="job_2", step="upload", attempt=1, status="processing"):
        inside = json.loads(formatter.format(_record("storage slow")))
    assert (inside["job_id"], inside["step"], inside["attempt"]) == ("job_2", "upload", 1)
    # A step task binds its job for the rest of the task; Celery's task signals clear it between tasks
    logs.bind(job_id="job_4", step="generate", attempt=3, status="processing")
    bound = json.loads(formatter.format(_record("provider slow")))
    logs.clear()
    assert (bound["job_id"], bound["attempt"]) == ("job_4", 3)
    assert json.loads(formatter.format(_record("idle")))["job_id"] is None
    # Outside, and for a line with no job, the fields are null, never missing
    outside = json.loads(formatter.format(_record("reaper deadline=0 lost_worker=1 seconds=0.5 ratio=nan")))
    assert outside["job_id"] is None and outside["lost_worker"] == 1 and outside["seconds"] == 0.5
    assert outside["ratio"] == "nan"  # JSON has no NaN: kept as text
    # Another library's message is not read for key=value pairs (it may hold anything)
    other = logging.LogRecord("celery.worker", logging.INFO, __file__, 1, "uid=0 job_id=x", (), None)
    assert json.loads(formatter.format(other))["job_id"] is None
    # A message cannot overwrite the line's own keys; an exception is one field, not more lines
    try:
        raise ValueError("boom")
    except ValueError:
        crashed = formatter.format(_record("step crashed level=fake message=x job_id=job_3", exc_info=sys.exc_info()))
    assert "\n" not in crashed
    parsed = json.loads(crashed)
    assert parsed["level"] == "INFO" and parsed["message"].startswith("step crashed")
    assert parsed["job_id"] == "job_3" and "ValueError: boom" in parsed["exception"]


def test_a_bad_log_format_or_metrics_setting_stops_the_start_naming_the_variable():
    from pipeline.config import Config, ConfigError
    with pytest.raises(ConfigError, match="GENLINE_LOG_FORMAT"):
        Config.from_env({"GENLINE_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="GENLINE_WORKER_METRICS_PORT"):
        Config.from_env({"GENLINE_WORKER_METRICS_PORT": "70000"})
    with pytest.raises(ConfigError, match="GENLINE_METRICS_TENANT_LABELS"):
        Config.from_env({"GENLINE_METRICS_TENANT_LABELS": "maybe"})
    assert Config.from_env({"GENLINE_LOG_FORMAT": "JSON"}).log_format == "json"


def test_key_value_lines_stay_the_default(stack, tenant):
    job = stack.submit(tenant, {"prompt": "plain text", "params": {"size": "16x16"}})
    assert stack.wait(tenant, job["id"])["status"] == "completed"
    worker_log = stack.processes[0].log()
    lines = [line for line in worker_log.splitlines() if f"job_id={job['id']}" in line and "step finished" in line]
    assert lines and all("level=INFO logger=genline.steps" in line and not line.startswith("{") for line in lines)


class _Proc(services.Process):
    """A process whose stdout and stderr are kept apart (stderr is what is checked)."""

    def start(self):
        self._log = open(self.log_path, "wb")
        self.err_path = self.log_path.with_suffix(".err")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self._log, stderr=self._err,
                                     start_new_session=True)
        return self

    def stderr_lines(self) -> list[str]:
        return [line for line in self.err_path.read_text().splitlines() if line.strip()]

    def stop(self, timeout: float = 15):
        super().stop(timeout)
        self._err.close()


def _objects(proc: _Proc) -> list[dict]:
    found = []
    for line in proc.stderr_lines():
        try:
            found.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{proc.name} wrote a line that is not JSON: {line!r}") from None
    assert found and all(isinstance(o, dict) and KEYS <= set(o) for o in found), found[:3]
    return found


@pytest.mark.slow
def test_web_worker_and_beat_write_one_json_object_per_line(make_stack):
    # Given web (gunicorn), a prefork worker and beat with GENLINE_LOG_FORMAT=json
    stack = make_stack(GENLINE_LOG_FORMAT="json")
    port = services.free_port()
    web = _Proc("web", [sys.executable, "-m", "gunicorn", "-c", str(services.ROOT / "deploy" / "gunicorn.conf.py"),
                        "--bind", f"127.0.0.1:{port}", "--workers", "1", "web:create_app()"],
                stack.env, stack.log_dir)
    worker = _Proc("worker", services.worker_argv(concurrency=1, name="json"), stack.env, stack.log_dir)
    beat = _Proc("beat", services.beat_argv(), stack.env, stack.log_dir)
    for proc in (web, worker, beat):
        stack.processes.append(proc.start())
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/healthz", timeout=1).ok, 30, "gunicorn")
    wait_for(lambda: any("ready" in o["message"] for o in _objects(worker)), 60, "the worker to be ready")
    wait_for(lambda: any("Acquired lock" in o["message"] for o in _objects(beat)), 30, "beat to hold the lock")

    # When a job is submitted over HTTP and completes
    headers = stack.new_tenant()
    answer = requests.post(f"{url}/v1/jobs", json={"prompt": "logged", "params": {"size": "16x16"}},
                           headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    wait_for(lambda: requests.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=5).json()["status"]
             == "completed", 60, "the job to complete")
    wait_for(lambda: any(o["job_id"] == job_id and o["step"] == "upload" for o in _objects(worker)), 10,
             "the upload's line")
    # And when the worker's pool process dies under it (billiard's logger, which Celery sets up apart)
    with open(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children") as fh:
        child = int(fh.read().split()[0])
    os.kill(child, signal.SIGTERM)
    wait_for(lambda: any("exited with" in o["message"] for o in _objects(worker)), 30, "the pool's exit line")
    for proc in (web, worker, beat):
        proc.stop()

    # Then every stderr line of each is a JSON object with the job's fields where known
    web_lines, worker_lines, beat_lines = _objects(web), _objects(worker), _objects(beat)
    submitted = [o for o in web_lines if o["job_id"] == job_id]
    assert submitted and submitted[0]["status"] == "queued" and submitted[0]["logger"] == "genline.submit"
    assert any(o["logger"] == "gunicorn.error" for o in web_lines)  # gunicorn's own lines too
    generated = [o for o in worker_lines if o["job_id"] == job_id and o["step"] == "generate"]
    assert generated and generated[0]["attempt"] == 1 and generated[0]["status"] == "processing"
    assert all(o["trace_id"] is None for o in generated)  # no OpenTelemetry configured
    assert any(o["logger"].startswith("celery") for o in worker_lines)  # Celery's lines too
    assert any(o["logger"].startswith("celery.beat") for o in beat_lines)
    # And gunicorn's access lines, on stdout, are JSON objects as well
    access = [json.loads(line) for line in web.log().splitlines() if line.strip()]
    assert any(o["logger"] == "gunicorn.access" and "/v1/jobs" in o["message"] for o in access)
