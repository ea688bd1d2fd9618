"""The server itself: raw HTTP, shutdown, concurrency and the CLI."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from typing import Any

import httpx
import openai
import pytest

from threadline.services.devmodel import DevModelSettings, answer_for, serve


async def test_raw_sse_and_routes(devmodel_url: str) -> None:
    body: Any = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=devmodel_url) as client:
        health = await client.get("/health")
        assert health.json() == {"status": "ok"}
        response = await client.post("/v1/chat/completions", json=body)
        assert response.headers["content-type"].startswith("text/event-stream")
        events = response.text.split("\n\n")
        assert events[-2:] == ["data: [DONE]", ""]
        assert all(event.startswith("data: ") for event in events[:-1])
        response = await client.post("/v1/messages", json={**body, "max_tokens": 10})
        assert response.text.startswith("event: message_start\ndata: {")
        assert response.text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
        models = await client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
        assert models.json()["first_id"] == "threadline-dev"
        missing = await client.get("/nowhere")
        assert missing.status_code == 404 and missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/chat/completions", b"{not json"),
        ("/v1/chat/completions", b'{"model": "m"}'),
        ("/v1/messages", b"[1, 2]"),
        ("/v1/messages", b'{"model": "m", "messages": [{"role": "user", "content": 3}]}'),
    ],
)
async def test_invalid_requests_answer_400(devmodel_url: str, path: str, payload: bytes) -> None:
    async with httpx.AsyncClient(base_url=devmodel_url) as client:
        response = await client.post(path, content=payload)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


USER: Any = [{"role": "user", "content": "hi"}]
THINK: Any = {"type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize(
    ("path", "extra", "words"),
    [
        ("/v1/chat/completions", {"temperature": 2.5}, "temperature"),
        ("/v1/chat/completions", {"top_p": 1.5}, "top_p"),
        ("/v1/chat/completions", {"top_p": "high"}, "top_p"),
        ("/v1/messages", {"temperature": 1.5}, "temperature"),
        ("/v1/messages", {"top_p": -0.1}, "top_p"),
        ("/v1/messages", {"thinking": {"type": "enabled", "budget_tokens": 1023}}, "at least"),
        ("/v1/messages", {"thinking": {"type": "on", "budget_tokens": 2000}}, "thinking.type"),
        ("/v1/messages", {"thinking": THINK, "max_tokens": 1024}, "greater than"),
        ("/v1/messages", {"thinking": THINK, "temperature": 0.5}, "temperature"),
        ("/v1/messages", {"thinking": THINK, "top_p": 0.9}, "top_p"),
    ],
)
async def test_sampling_out_of_bounds_answers_400_as_the_apis_do(
    devmodel_url: str, path: str, extra: dict[str, Any], words: str
) -> None:
    body = {"model": "m", "messages": USER, "max_tokens": 4000, **extra}
    async with httpx.AsyncClient(base_url=devmodel_url) as client:
        response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/chat/completions", {"temperature": 2, "top_p": 0}),
        ("/v1/messages", {"temperature": 1, "top_p": 1}),
        ("/v1/messages", {"thinking": THINK, "top_p": 0.95, "temperature": 1}),
        ("/v1/messages", {"thinking": {"type": "disabled"}, "temperature": 0}),
    ],
)
async def test_sampling_within_bounds_is_answered(
    devmodel_url: str, path: str, extra: dict[str, Any]
) -> None:
    body = {"model": "m", "messages": USER, "max_tokens": 4000, **extra}
    async with httpx.AsyncClient(base_url=devmodel_url) as client:
        response = await client.post(path, json=body)
    assert response.status_code == 200, response.text


async def test_leaving_serve_ends_streams_in_progress() -> None:
    async with serve(DevModelSettings.fast()) as url:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="dev", max_retries=0)
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "[[stall:60000 after=1]]"}],
            stream=True,
        )
        first = await anext(aiter(stream))
        assert first.choices[0].delta.role == "assistant"
        started = time.monotonic()
    assert time.monotonic() - started < 5
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass
    await client.close()


async def test_many_concurrent_paced_streams() -> None:
    settings = DevModelSettings(ttft_ms=20, tokens_per_second=200)
    async with (
        serve(settings) as url,
        openai.AsyncOpenAI(base_url=url + "/v1", api_key="dev", max_retries=0) as client,
    ):

        async def one(i: int) -> str:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"n{i} [[words:20]]"}], stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        started = time.monotonic()
        texts = await asyncio.gather(*(one(i) for i in range(200)))
        elapsed = time.monotonic() - started
    assert set(texts) == {answer_for("[[words:20]]")}
    assert 0.02 + 19 / 200 <= elapsed < 30


async def run_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "threadline.services.devmodel",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_cli_serves_until_interrupted() -> None:
    process = await run_cli("--port", "0", "--ttft-ms", "0", "--tokens-per-second", "0")
    assert process.stdout is not None
    lines = []
    while not lines or not lines[-1].startswith("Anthropic base URL"):
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert line, "the CLI exited before printing its URLs"
        lines.append(line.decode().strip())
    url = lines[-1].split()[-1]
    assert lines[-2] == f"OpenAI base URL:    {url}/v1"
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="dev", max_retries=0) as client:
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "cli"}]
        )
    assert completion.choices[0].message.content == answer_for("cli")
    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0


async def test_cli_reports_a_busy_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        process = await run_cli("--port", str(port))
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 1
    busy = f"port {port} on 127.0.0.1 is already in use (is Threadline already running?)"
    assert stderr.decode() == f"threadline devmodel: {busy}; choose another with --port\n"
