"""The dev model: a local fake LLM speaking the OpenAI and Anthropic wire formats.

Tests, benchmarks and the demo use it when no provider API key is set. What it
answers is scripted by ``[[...]]`` directives in the last user message; see
docs/devmodel.md.
"""

from .app import DevModelApp, create_app
from .cli import main
from .script import BAD_KEY, MISSING_MODEL, answer_for, tool_answer
from .server import serve
from .settings import DEFAULT_MODEL, DevModelSettings

__all__ = [
    "BAD_KEY",
    "DEFAULT_MODEL",
    "MISSING_MODEL",
    "DevModelApp",
    "DevModelSettings",
    "answer_for",
    "create_app",
    "main",
    "serve",
    "tool_answer",
]
