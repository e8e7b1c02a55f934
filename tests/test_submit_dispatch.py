"""What a submission leaves in Redis: its ``queued`` event published, and its first message's in-flight marker.

The two go out in one round trip once the message is sent; when the send
fails the event is still published and no marker is set (the reaper sends
the message later).
"""
from __future__ import annotations

import json
import time
from unittest import mock

import redis
from kombu.exceptions import OperationalError

from pipeline.adapters.dispatch import MARKER
from pipeline.adapters.events import CHANNEL
from tests.services import wait_for


def _listen(stack):
    """A subscription to the event channel, returned once Redis confirmed it (not after a fixed pause)."""
    pubsub = redis.Redis.from_url(stack.env["REDIS_URL"]).pubsub()
    pubsub.subscribe(CHANNEL)

    def confirmed() -> bool:  # nothing published can come before the confirmation
        message = pubsub.get_message(timeout=0.1)
        return bool(message) and message["type"] == "subscribe"

    wait_for(confirmed, 10, f"the subscription to {CHANNEL}")
    pubsub.ignore_subscribe_messages = True
    return pubsub


def _published(pubsub, job_id: str, seconds: float = 3.0) -> list[dict]:
    found, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        message = pubsub.get_message(timeout=0.1)
        if message and json.loads(message["data"])["job_id"] == job_id:
            found.append(json.loads(message["data"]))
    return found


def test_a_submission_publishes_its_queued_event_and_marks_its_message(make_stack):
    # Given a stack with no worker, and a listener on the event channel
    stack = make_stack()
    tenant = stack.new_tenant("sd")
    pubsub = _listen(stack)

    # When a job is submitted
    job = stack.submit(tenant, {"prompt": "d", "params": {"size": "16x16"}})

    # Then its queued event was published once, as the log holds it
    assert _published(pubsub, job["id"]) == stack.events(job["id"])
    assert [e["type"] for e in stack.events(job["id"])] == ["queued"]
    # And its validate message is marked in flight until about the deadline
    ttl = redis.Redis.from_url(stack.env["REDIS_URL"]).ttl(MARKER.format(job["id"]))
    assert 60 < ttl <= job["budget"]["deadline_s"] + 60


def test_when_the_send_fails_the_event_is_still_published_and_no_marker_set(make_stack):
    # Given a stack whose broker refuses messages
    stack = make_stack()
    tenant = stack.new_tenant("sf")
    pubsub = _listen(stack)
    with mock.patch.object(stack.app.extensions["celery"], "send_task", side_effect=OperationalError("down")):
        # When a job is submitted
        job = stack.submit(tenant, {"prompt": "d", "params": {"size": "16x16"}})

    # Then it is stored and queued, its queued event published, and no marker set
    assert job["status"] == "queued"
    assert [e["type"] for e in _published(pubsub, job["id"])] == ["queued"]
    assert redis.Redis.from_url(stack.env["REDIS_URL"]).exists(MARKER.format(job["id"])) == 0
