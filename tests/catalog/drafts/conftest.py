"""Fixtures for usage-guide drafts: the docs site, the model server, settings that point at them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.catalog.drafts.support import DocsSite, ModelServer, docs_site, model_server
from tests.support.secret_watch import WATCH

LLM_KEY = "llm-test-key-6f1c2a9b7e4d0c3a"


@pytest.fixture
def docs() -> Iterator[DocsSite]:
    with docs_site() as site:
        yield site


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with model_server() as server:
        yield server


@pytest.fixture
def loopback(settings: Any) -> Any:
    """The local docs site lives on 127.0.0.1: allowed for tests only, as in the notifications tests."""
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True
    return settings


@pytest.fixture
def offline_drafts(loopback: Any) -> Any:
    loopback.AGENTKEY_LLM_BASE_URL = ""
    loopback.AGENTKEY_LLM_MODEL = ""
    loopback.AGENTKEY_LLM_API_KEY = ""
    return loopback


@pytest.fixture
def llm_drafts(loopback: Any, model: ModelServer) -> ModelServer:
    WATCH.register(LLM_KEY)  # the model's API key must never show up in a log or a response either
    loopback.AGENTKEY_LLM_BASE_URL = model.base_url
    loopback.AGENTKEY_LLM_MODEL = "test-model-1"
    loopback.AGENTKEY_LLM_API_KEY = LLM_KEY
    loopback.AGENTKEY_LLM_READ_TIMEOUT = 10
    loopback.AGENTKEY_LLM_TIMEOUT = 30
    return model
