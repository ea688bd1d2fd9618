"""A real dev model server on a free port, shared by the session, and real SDK clients."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anthropic
import openai
import pytest
import pytest_asyncio

from threadline.services.devmodel import DevModelSettings, serve


@pytest_asyncio.fixture(scope="session")
async def devmodel_url() -> AsyncIterator[str]:
    async with serve(DevModelSettings.fast()) as url:
        yield url


@pytest_asyncio.fixture
async def oai(devmodel_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=devmodel_url + "/v1", api_key="dev", max_retries=0
    ) as client:
        yield client


@pytest_asyncio.fixture
async def anth(devmodel_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=devmodel_url, api_key="dev", max_retries=0
    ) as client:
        yield client


@pytest.fixture
def tag() -> str:
    """A word that makes a test's conversation unique (``times=N`` counts per conversation)."""
    return "t" + uuid.uuid4().hex[:8]
