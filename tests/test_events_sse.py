"""GET /v1/jobs/{id}/events: replay, live events, Last-Event-ID resumes, heartbeats, tokens, CORS."""
from __future__ import annotations

import time
from urllib.parse import urlsplit

from pipeline.config import Config
from tests.sse import Reader

SLOW = {"prompt": "a slow lighthouse", "params": {"size": "32x32", "simulate": {"latency_s": 1.5}}}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def open_stream(client, url: str, **headers):
    response = client.get(path_of(url), headers=headers, buffered=False)
    return response


def read_all(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/event-stream"
    frames = list(Reader(response.iter_encoded()).events())
    response.close()
    return frames


def test_stream_of_a_running_job_has_every_event_once_in_order_and_closes(stack, tenant):
    # Given a job that takes a moment (so most of its events are live, not replayed)
    job = stack.submit(tenant, SLOW)

    # When a client without an API key follows urls.events (the job's token) to the end
    frames = read_all(open_stream(stack.client, job["urls"]["events"]))

    # Then it got exactly the job's event log, in order, ending with completed; the stream closed
    log = stack.events(job["id"])
    assert [int(f["id"]) for f in frames] == [e["id"] for e in log] == list(range(1, len(log) + 1))
    assert [f["event"] for f in frames] == [e["type"] for e in log]
    assert [f["data"] for f in frames] == log
    types = [f["event"] for f in frames]
    assert types[0] == "queued" and types[-1] == "completed"
    assert [f["data"]["data"]["step"] for f in frames if f["event"] == "started"] == ["validate", "generate", "upload"]
    progress = [f["data"]["data"]["fraction"] for f in frames if f["event"] == "progress"]
    assert len(progress) >= 2 and progress == sorted(progress)


def test_reconnect_with_last_event_id_gets_the_rest_exactly_once(stack, tenant):
    # Given a client that read the first events of a running job and then lost its connection
    job = stack.submit(tenant, SLOW)
    first = open_stream(stack.client, job["urls"]["events"])
    reader = Reader(first.iter_encoded())
    seen = []
    for frame in reader.events():
        seen.append(frame)
        if frame["event"] == "progress":
            break
    first.close()
    assert seen[-1]["event"] == "progress"

    # When it reconnects with Last-Event-ID, as EventSource does
    rest = read_all(open_stream(stack.client, job["urls"]["events"], **{"Last-Event-ID": seen[-1]["id"]}))

    # Then both parts together are the whole log: nothing missed, nothing twice
    ids = [int(f["id"]) for f in seen + rest]
    log = stack.events(job["id"])
    assert ids == [e["id"] for e in log]
    assert rest[-1]["event"] == "completed"


def test_stream_opened_after_completion_replays_and_closes(stack, tenant):
    # Given a completed job
    job = stack.submit(tenant, {"prompt": "done already", "params": {"size": "16x16"}})
    stack.wait(tenant, job["id"])

    # When a stream opens (with the API key this time)
    frames = read_all(stack.client.get(f"/v1/jobs/{job['id']}/events", headers=tenant, buffered=False))

    # Then it replays the whole log and closes after completed
    assert [f["data"] for f in frames] == stack.events(job["id"])
    assert frames[-1]["event"] == "completed"

    # And resuming after the last event answers 204, which stops EventSource reconnecting
    last = frames[-1]["id"]
    again = stack.client.get(f"/v1/jobs/{job['id']}/events", headers={**tenant, "Last-Event-ID": last})
    assert again.status_code == 204


def test_quiet_streams_get_heartbeats(stack, tenant):
    # Given a web app on the same stack with a short heartbeat interval
    from web import create_app
    app = create_app(Config.from_env({**stack.env, "GENLINE_SSE_HEARTBEAT_S": "0.2"}))
    job = stack.submit(tenant, SLOW)

    # When a client follows the job
    response = app.test_client().get(path_of(job["urls"]["events"]), buffered=False)
    reader = Reader(response.iter_encoded())
    frames = []
    while not reader.closed:
        frames.extend(reader.next_frames())
    response.close()

    # Then comments keep the connection warm between events, and every event still arrives once
    assert any(f["comment"] == "heartbeat" for f in frames)
    events = [f for f in frames if f["data"] is not None and f["event"] != "estimation"]  # ETA: not logged
    assert [int(f["id"]) for f in events] == [e["id"] for e in stack.events(job["id"])]


def test_a_token_reads_only_its_own_job(stack, tenant):
    # Given two jobs
    a = stack.submit(tenant, {"prompt": "a", "params": {"size": "16x16"}})
    b = stack.submit(tenant, {"prompt": "b", "params": {"size": "16x16"}})
    token_a = urlsplit(a["urls"]["events"]).query

    # Then a's token opens a's stream, not b's, and a forged token is refused
    assert stack.client.get(f"/v1/jobs/{b['id']}/events?{token_a}").status_code == 401
    forged = stack.client.get(f"/v1/jobs/{a['id']}/events?token=forged.token")
    assert forged.status_code == 401 and forged.get_json()["error"]["code"] == "unauthorized"
    assert stack.client.get(f"/v1/jobs/{a['id']}/events").status_code == 401
    assert read_all(open_stream(stack.client, a["urls"]["events"]))[-1]["event"] in ("completed", "failed")


def test_bad_last_event_id_is_a_clear_422(stack, tenant):
    job = stack.submit(tenant, {"prompt": "x", "params": {"size": "16x16"}})
    for bad in ("abc", "-1", "99999"):
        response = stack.client.get(f"/v1/jobs/{job['id']}/events", headers={**tenant, "Last-Event-ID": bad})
        assert response.status_code == 422, bad
        assert response.get_json()["error"]["code"] == "invalid_input"


def test_cors_answers_allowed_origins_on_token_urls(stack, tenant):
    # Given a web app that allows one frontend origin
    from web import create_app
    app = create_app(Config.from_env({**stack.env, "GENLINE_CORS_ORIGINS": "https://app.example"}))
    client = app.test_client()
    job = stack.submit(tenant, {"prompt": "cors", "params": {"size": "16x16"}})
    stack.wait(tenant, job["id"])

    # When that origin (and another) read the job with its token
    ok = client.get(path_of(job["urls"]["self"]), headers={"Origin": "https://app.example"})
    other = client.get(path_of(job["urls"]["self"]), headers={"Origin": "https://evil.example"})
    preflight = client.options(path_of(job["urls"]["events"]), headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id"})

    # Then only the allowed origin gets CORS headers, and EventSource's Last-Event-ID may be sent
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in other.headers
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "last-event-id" in preflight.headers["Access-Control-Allow-Headers"].lower()


def test_wait_answers_as_soon_as_the_job_ends(stack, tenant):
    # Given a running job of about 1.5 s
    job = stack.submit(tenant, SLOW)

    # When a client long-polls it with ?wait=30
    started = time.monotonic()
    done = stack.client.get(f"/v1/jobs/{job['id']}?wait=30", headers=tenant).get_json()

    # Then the answer is the terminal job, well before the 30 s
    assert done["status"] == "completed"
    assert time.monotonic() - started < 25


def test_wait_gives_the_job_as_it_is_after_n_seconds(stack, tenant):
    job = stack.submit(tenant, {"prompt": "slow", "params": {"size": "16x16", "simulate": {"latency_s": 4}}})
    started = time.monotonic()
    held = stack.client.get(f"/v1/jobs/{job['id']}?wait=1", headers=tenant).get_json()
    assert held["status"] in ("queued", "processing")
    assert time.monotonic() - started >= 0.9


def test_prefer_wait_on_submit_returns_the_finished_job(stack, tenant):
    response = stack.client.post("/v1/jobs", json={"prompt": "held", "params": {"size": "16x16"}},
                                 headers={**tenant, "Prefer": "wait=30"})
    assert response.status_code == 202
    assert response.get_json()["status"] == "completed"
