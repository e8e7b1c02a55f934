"""The openai and http providers against real HTTP servers on 127.0.0.1 that speak their
protocols: request shapes checked in the server, every error mapping, time and cancel."""
from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from pipeline.adapters.providers.base import AttemptContext, ProviderRequest
from pipeline.adapters.providers.http import HTTPProvider
from pipeline.adapters.providers.httpcall import ProviderUnusable
from pipeline.adapters.providers.openai import OpenAIProvider
from pipeline.core.errors import (
    Canceled,
    InvalidInput,
    NetworkError,
    ProviderError,
    RateLimited,
    Timeout,
    UnsafeContent,
)
from tests import services
from tests.fake_providers import TOKEN, ImageServer
from tests.images import open_image


@pytest.fixture(scope="module")
def server():
    s = ImageServer().start()
    yield s
    s.stop()


def ctx(seconds: float = 10, canceled=lambda: False) -> AttemptContext:
    return AttemptContext(job_id="job_test", attempt=1, deadline=time.monotonic() + seconds, is_canceled=canceled)


def openai(server, key=TOKEN) -> OpenAIProvider:
    return OpenAIProvider(key, server.url + "/v1")


def endpoint(server, token=TOKEN) -> HTTPProvider:
    return HTTPProvider(server.url + "/infer", token)


def test_openai_generate_sends_json_with_bearer_key_and_decodes_b64(server):
    # When two images are generated
    images = openai(server).run(ProviderRequest("generate", "gen two", {"n": 2, "size": "64x32", "format": "webp"}), ctx())

    # Then the server saw one JSON request at /v1/images/generations with the key
    [seen] = server.seen("gen two")
    assert seen["path"] == "/v1/images/generations"
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert seen["json"] == {"model": "gpt-image-1", "prompt": "gen two", "n": 2, "size": "64x32", "output_format": "webp"}
    # and two decoded images came back, tagged with the model
    assert [(i.media_type, i.model) for i in images] == [("image/png", "gpt-image-1")] * 2
    assert open_image(images[0].data).size == (24, 16)


def test_openai_dalle_models_ask_for_b64_json(server):
    openai(server).run(ProviderRequest("generate", "dalle", {}, model="dall-e-3"), ctx())
    [seen] = server.seen("dalle")
    assert seen["json"]["response_format"] == "b64_json" and "output_format" not in seen["json"]


def test_openai_inpaint_sends_multipart_images_and_an_alpha_mask(server):
    # Given two input images and a mask without alpha (white = repaint)
    images = [Image.new("RGB", (20, 10), (200, 0, 0)), Image.new("RGB", (20, 10), (0, 200, 0))]
    mask = Image.new("L", (20, 10), 0)
    mask.paste(255, (10, 0, 20, 10))

    # When the inpaint runs
    openai(server).run(ProviderRequest("inpaint", "paint it", {"size": "1024x1024"}, images=images, mask=mask), ctx())

    # Then /v1/images/edits got multipart fields, image[] files and a mask PNG
    [seen] = server.seen("paint it")
    assert seen["path"] == "/v1/images/edits" and seen["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert seen["form"]["model"] == ["gpt-image-1"] and seen["form"]["size"] == ["1024x1024"]
    assert len(seen["files"]["image[]"]) == 2
    assert open_image(seen["files"]["image[]"][0]).size == (20, 10)
    sent_mask = open_image(seen["files"]["mask"][0])
    # transparent exactly where the mask was white (OpenAI's convention)
    assert sent_mask.mode == "RGBA"
    assert sent_mask.getpixel((15, 5))[3] == 0 and sent_mask.getpixel((5, 5))[3] == 255


@pytest.mark.parametrize("prompt, error, retry_after", [
    ("status:400:code=content_policy_violation", UnsafeContent, None),
    ("status:400:code=moderation_blocked", UnsafeContent, None),
    ("status:400", InvalidInput, None),
    ("status:429:retry=7", RateLimited, 7.0),
    ("status:500", ProviderError, None),
    ("status:503", ProviderError, None),
    ("garbage", ProviderError, None),
])
@pytest.mark.parametrize("which", ["openai", "http"])
def test_http_answers_map_onto_genline_error_codes(server, which, prompt, error, retry_after):
    provider = openai(server) if which == "openai" else endpoint(server)
    with pytest.raises(error) as caught:
        provider.run(ProviderRequest("generate", prompt, {}), ctx())
    assert caught.value.retry_after == retry_after
    assert caught.value.retryable == (error in (RateLimited, ProviderError))


@pytest.mark.parametrize("which", ["openai", "http"])
def test_a_refused_key_is_a_provider_error_that_skips_the_providers_other_attempts(server, which):
    provider = openai(server, key="wrong") if which == "openai" else endpoint(server, token="wrong")
    with pytest.raises(ProviderUnusable) as caught:
        provider.run(ProviderRequest("generate", "bad key", {}), ctx())
    assert caught.value.code == "provider_error" and caught.value.exhausts_provider
    assert "401" in caught.value.message
    good = openai(server) if which == "openai" else endpoint(server)
    with pytest.raises(ProviderUnusable, match="403"):
        good.run(ProviderRequest("generate", "status:403", {}), ctx())


def test_unconfigured_providers_say_which_variable_to_set():
    with pytest.raises(ProviderUnusable, match="OPENAI_API_KEY"):
        OpenAIProvider(None, "http://127.0.0.1:9").run(ProviderRequest("generate", "x", {}), ctx())
    with pytest.raises(ProviderUnusable, match="GENLINE_HTTP_PROVIDER_URL"):
        HTTPProvider(None, None).run(ProviderRequest("generate", "x", {}), ctx())


@pytest.mark.parametrize("which", ["openai", "http"])
def test_nothing_listening_is_a_network_error(which):
    url = f"http://127.0.0.1:{services.free_port()}"
    provider = OpenAIProvider(TOKEN, url + "/v1") if which == "openai" else HTTPProvider(url + "/infer", TOKEN)
    with pytest.raises(NetworkError):
        provider.run(ProviderRequest("generate", "x", {}), ctx())


@pytest.mark.parametrize("which", ["openai", "http"])
def test_a_slow_server_ends_the_attempt_at_its_time_limit(server, which):
    provider = openai(server) if which == "openai" else endpoint(server)
    started = time.monotonic()
    with pytest.raises(Timeout):
        provider.run(ProviderRequest("generate", "slow:20", {}), ctx(seconds=1.0))
    assert time.monotonic() - started < 10  # the attempt's 1 s, not the server's 20 s


def test_http_endpoint_gets_json_with_input_urls_and_may_answer_raw_bytes(server):
    # When an edit is sent with its inputs as URLs
    request = ProviderRequest("edit", "raw", {"n": 1, "seed": 3, "simulate": {"latency_s": 1}}, model="sdxl",
                              input_urls=["https://files.example/a.png"], mask_url=None)
    [image] = endpoint(server).run(request, ctx())

    # Then the endpoint saw the documented JSON body and the bearer token
    [seen] = server.seen("raw")
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert seen["json"] == {"operation": "edit", "prompt": "raw", "params": {"n": 1, "seed": 3}, "model": "sdxl",
                            "inputs": ["https://files.example/a.png"], "mask": None}
    # and its raw PNG answer became the image
    assert image.media_type == "image/png" and image.model == "sdxl"


def test_http_endpoint_json_answer_names_the_model(server):
    images = endpoint(server).run(ProviderRequest("generate", "json answer", {"n": 2}), ctx())
    assert [i.model for i in images] == ["fake-diffusion", "fake-diffusion"]


def test_cancel_abandons_a_hung_request_within_a_second(server):
    # Given a request the server never answers
    canceled = threading.Event()
    threading.Timer(0.5, canceled.set).start()
    started = time.monotonic()

    # When the job is canceled half a second in
    with pytest.raises(Canceled):
        endpoint(server).run(ProviderRequest("generate", "hang", {}), ctx(seconds=30, canceled=canceled.is_set))

    # Then the provider stops waiting at once, not at the attempt's 30 s
    assert time.monotonic() - started < 5
