"""OpenAIChatModel against a real OpenAI-compatible HTTP server on loopback.

The server (FastAPI + uvicorn in a background thread) follows a failure script carried in the user
message, so that concurrent conversations each get their own behaviour:

* ``ok``               answer at once;
* ``fail:N:STATUS``    answer HTTP STATUS for this conversation's first N requests, then succeed;
* ``slow:N``           sleep far past the client's timeout for the first N requests, then succeed;
* ``status:STATUS``    always answer HTTP STATUS;
* ``hold:ID``          wait until ``hold_target`` requests are in flight at once (or ``HOLD_MAX_SECONDS``),
                       then answer: how many the client sends at once, whatever the machine's speed.

No test depends on how fast the machine is: timeouts are generous beside loopback round trips, a slow
answer is far slower than any timeout, and concurrency is measured by a barrier, not by a sleep.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from support import serve_in_thread  # noqa: E402
from zerosearch.llm.openai_backend import OpenAIChatModel  # noqa: E402

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT = 3.0  # a loopback answer takes milliseconds; generous for a loaded machine
SLOW_SECONDS = 120.0  # "never" beside CLIENT_TIMEOUT: a client that waited would be caught
HOLD_MAX_SECONDS = 30.0  # the barrier gives up after this (a client sending fewer at once than expected)
HOLD_AFTER_SECONDS = 0.05  # held a little past the barrier, so a client over its limit shows up


class ScriptedServer:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()  # requests per script
        self.in_flight = 0
        self.max_in_flight = 0
        self.hold_target = 1
        self.held = asyncio.Event()
        self.bodies: list[dict] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.chat)

    def reset(self) -> None:
        self.seen.clear()
        self.in_flight = self.max_in_flight = 0
        self.hold_target = 1
        self.held = asyncio.Event()
        self.bodies.clear()

    async def chat(self, request: Request):
        body = await request.json()
        self.bodies.append(body)
        script = body["messages"][-1]["content"]
        self.seen[script] += 1
        n = self.seen[script]
        # One event loop thread: these counters need no lock.
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            kind, _, rest = script.partition(":")
            if kind == "fail":
                count, status = (int(x) for x in rest.split(":"))
                if n <= count:
                    return JSONResponse({"error": {"message": f"scripted {status}"}}, status_code=status)
            elif kind == "slow" and n <= int(rest):
                await asyncio.sleep(SLOW_SECONDS)
            elif kind == "status":
                return JSONResponse({"error": {"message": "scripted"}}, status_code=int(rest))
            elif kind == "hold":
                if self.in_flight >= self.hold_target:
                    self.held.set()
                try:
                    await asyncio.wait_for(self.held.wait(), HOLD_MAX_SECONDS)
                except asyncio.TimeoutError:
                    pass  # fewer arrived at once than expected: max_in_flight will say so
                await asyncio.sleep(HOLD_AFTER_SECONDS)
            return {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"Doc 1: reply to {script} #{n}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        finally:
            self.in_flight -= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    scripted = ScriptedServer()
    with serve_in_thread(scripted.app) as url:
        scripted.base_url = f"{url}/v1"
        yield scripted


@pytest.fixture
def make_model(server, monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # loopback must not go through a proxy
    server.reset()
    models = []

    def make(**kwargs) -> OpenAIChatModel:
        kwargs = {"timeout": CLIENT_TIMEOUT, "backoff": 0.01, "backoff_max": 0.05, **kwargs}
        model = OpenAIChatModel("sim", server.base_url, **kwargs)
        models.append(model)
        return model

    yield make
    for model in models:
        model.close()


def conv(script: str) -> list[dict]:
    return [{"role": "system", "content": ""}, {"role": "user", "content": script}]


def test_success_and_request_body(server, make_model):
    model = make_model()
    (out,) = model.complete([conv("ok")], max_tokens=600, temperature=0.8)
    assert out.ok and out.text == "Doc 1: reply to ok #1" and out.attempts == 1
    body = server.bodies[0]
    assert body["model"] == "sim" and body["max_tokens"] == 600 and body["temperature"] == 0.8
    assert body["messages"] == conv("ok")
    assert (model.calls, model.failures, model.retries) == (1, 0, 0)


def test_stop_strings_reach_the_server(server, make_model):
    model = make_model()
    model.complete([conv("ok")], max_tokens=10, temperature=0.0, stop=["Doc 4"])
    model.complete([conv("ok")], max_tokens=10, temperature=0.0)
    assert server.bodies[0]["stop"] == ["Doc 4"]
    assert "stop" not in server.bodies[1]  # nothing sent when there is no stop string
    with pytest.raises(ValueError, match="at most 4 stop strings"):
        model.complete([conv("ok")], max_tokens=10, temperature=0.0, stop=list("abcde"))


def test_retries_5xx_and_429_then_succeeds(server, make_model):
    model = make_model(max_retries=3)
    outs = model.complete([conv("fail:2:500"), conv("fail:1:429"), conv("fail:3:503"), conv("ok")],
                          max_tokens=8, temperature=0)
    assert [o.ok for o in outs] == [True, True, True, True]
    assert [o.attempts for o in outs] == [3, 2, 4, 1]
    assert outs[0].text == "Doc 1: reply to fail:2:500 #3"
    assert server.seen["fail:2:500"] == 3 and server.seen["fail:3:503"] == 4
    assert (model.calls, model.failures, model.retries) == (4, 0, 2 + 1 + 3)


def test_still_failing_call_is_reported_not_raised(server, make_model):
    model = make_model(max_retries=2)
    outs = model.complete([conv("status:500"), conv("ok")], max_tokens=8, temperature=0)
    assert not outs[0].ok and outs[0].text == ""
    assert outs[0].attempts == 3 and server.seen["status:500"] == 3
    assert "500" in outs[0].error and "after 3 attempts" in outs[0].error
    assert outs[1].ok
    assert (model.calls, model.failures, model.retries) == (2, 1, 2)


def test_no_retry_on_400(server, make_model):
    model = make_model(max_retries=5)
    outs = model.complete([conv("status:400"), conv("status:404")], max_tokens=8, temperature=0)
    assert [o.attempts for o in outs] == [1, 1]
    assert server.seen["status:400"] == 1 and server.seen["status:404"] == 1
    assert "400" in outs[0].error and "404" in outs[1].error
    assert (model.calls, model.failures, model.retries) == (2, 2, 0)


def test_timeout_is_retried(server, make_model):
    model = make_model(max_retries=2, timeout=2.0)  # the retry is answered at once
    start = time.monotonic()
    (out,) = model.complete([conv("slow:1")], max_tokens=8, temperature=0)
    assert out.ok and out.attempts == 2
    assert time.monotonic() - start < SLOW_SECONDS / 2  # the slow request was abandoned, not waited for
    model = make_model(max_retries=1, timeout=0.5)
    (out,) = model.complete([conv("slow:5")], max_tokens=8, temperature=0)
    assert not out.ok and out.attempts == 2 and "Timeout" in out.error


def test_backoff_is_bounded(server, make_model, monkeypatch):
    model = make_model(max_retries=4, backoff=0.02, backoff_max=0.05)
    delays = [model.backoff_delay(r) for r in range(1, 9) for _ in range(50)]
    assert all(0.01 <= d <= 0.05 for d in delays)
    assert max(model.backoff_delay(1) for _ in range(50)) <= 0.02  # the first retry waits <= backoff
    import zerosearch.retry

    waits = []
    draw = zerosearch.retry.backoff_delay
    monkeypatch.setattr(zerosearch.retry, "backoff_delay", lambda *a: waits.append(draw(*a)) or waits[-1])
    start = time.monotonic()
    (out,) = model.complete([conv("status:502")], max_tokens=8, temperature=0)
    elapsed = time.monotonic() - start
    assert out.attempts == 5 and len(waits) == 4
    # Four waits, each in [d/2, d] for d = 0.02 doubling, capped at 0.05, and really slept. The upper
    # bound is on the waits drawn, not on wall time, which a loaded machine stretches.
    caps = [0.02, 0.04, 0.05, 0.05]
    assert all(c / 2 <= w <= c for w, c in zip(waits, caps)), waits
    assert elapsed >= sum(waits)


def test_concurrency_limit_is_respected(server, make_model):
    # each request is held until 3 are in flight at once: exactly 3 whatever the machine's speed
    server.hold_target = 3
    model = make_model(max_concurrency=3, timeout=HOLD_MAX_SECONDS * 2)
    outs = model.complete([conv(f"hold:{i}") for i in range(12)], max_tokens=8, temperature=0)
    assert all(o.ok for o in outs)
    assert server.max_in_flight == 3  # bounded, and actually concurrent
    # Results come back in request order, whatever order the server answered in.
    assert [o.text for o in outs] == [f"Doc 1: reply to hold:{i} #1" for i in range(12)]


def test_connection_refused_is_retried_then_reported(make_model):
    model = OpenAIChatModel("sim", f"http://127.0.0.1:{_free_port()}/v1", timeout=0.5,
                            max_retries=2, backoff=0.01, backoff_max=0.02)
    (out,) = model.complete([conv("ok")], max_tokens=8, temperature=0)
    assert not out.ok and out.attempts == 3 and "Connection" in out.error
    assert (model.calls, model.failures, model.retries) == (1, 1, 2)
    model.close()


def test_api_key_default(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert OpenAIChatModel("m", "http://127.0.0.1:1/v1").client.api_key == "EMPTY"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert OpenAIChatModel("m", "http://127.0.0.1:1/v1").client.api_key == "sk-test"
    assert OpenAIChatModel("m", "http://127.0.0.1:1/v1", api_key="k").client.api_key == "k"
