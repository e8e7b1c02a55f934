"""One gunicorn gevent worker holds 500 open event streams and still answers other requests."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from pipeline.core.errors import Canceled
from pipeline.core.lifecycle import JobStatus
from pipeline.store import jobs
from tests import services
from tests.sse import RawStreams

STREAMS = 500
JOBS = 5


@pytest.mark.slow
def test_500_concurrent_streams_on_one_web_process(stack, tenant, log_dir):
    # Given one gunicorn process with one gevent worker, and five long jobs
    web, url = services.start_gunicorn(stack.env, log_dir, workers=1)
    streams = None
    try:
        submitted = [stack.submit(tenant, {"prompt": f"held {i}", "params": {"size": "16x16",
                                           "simulate": {"latency_s": 120}}}) for i in range(JOBS)]
        paths = []
        for i in range(STREAMS):
            events_url = urlsplit(submitted[i % JOBS]["urls"]["events"])
            paths.append(f"{events_url.path}?{events_url.query}")

        # When 500 clients open the jobs' event streams at once
        streams = RawStreams(url, paths)
        streams.pump(90, until=lambda: all(streams.frames(i) for i in range(STREAMS)))
        opened = [i for i in range(STREAMS) if streams.frames(i) and not streams.closed[i]]

        # Then every one is open and has its replay, and the same process still answers other requests
        assert len(opened) == STREAMS, f"only {len(opened)} of {STREAMS} streams are open with their replay"
        assert all(streams.status(i) == 200 for i in range(STREAMS))
        assert requests.get(f"{url}/healthz", timeout=30).status_code == 200
        job = requests.get(f"{url}/v1/jobs/{submitted[0]['id']}", headers=tenant, timeout=30)
        assert job.status_code == 200 and job.json()["status"] in ("queued", "processing")

        # When the jobs end (canceled in the store, as any worker or API call would)
        with stack.app.app_context():
            for item in submitted:
                error = Canceled("ended by the test").as_dict(None)
                assert jobs.transition(item["id"], JobStatus.CANCELED, error=error, data={"by": "test"})

        # Then every stream gets the terminal event and closes, with each job's whole log once, in order
        streams.pump(90)
        assert all(streams.closed), f"{streams.closed.count(False)} streams still open"
        logs = {item["id"]: [e["id"] for e in stack.events(item["id"])] for item in submitted}
        for i in range(STREAMS):
            events = [f for f in streams.frames(i) if f["data"] is not None and f["event"] != "estimation"]
            job_id = submitted[i % JOBS]["id"]
            assert [int(f["id"]) for f in events] == logs[job_id], f"stream {i}"
            assert events[-1]["event"] == "canceled"
    finally:
        if streams is not None:
            streams.close()
        web.stop()
