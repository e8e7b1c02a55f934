"""The REST API of a bed's web host, as the test process (or a bench) calls it over HTTP."""
from __future__ import annotations

import time

import requests

TERMINAL = ("completed", "failed", "canceled")


class Api:
    """A tenant's view of genline at ``base_url`` (``Authorization: Bearer <key>``)."""

    def __init__(self, base_url: str, key: str = "static-test-key"):
        self.base_url = base_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def submit(self, body: dict) -> dict:
        response = self.http.post(f"{self.base_url}/v1/jobs", json=body, timeout=30)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        response = self.http.get(f"{self.base_url}/v1/jobs/{job_id}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, statuses=TERMINAL, timeout: float = 90) -> dict:
        """Poll until the job's status is one of ``statuses``; fail naming the last state otherwise."""
        end = time.monotonic() + timeout
        job: dict = {}
        while time.monotonic() < end:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {job.get('status')} (step {job.get('step')}) after {timeout}s")
