"""The dev model: a local fake LLM speaking the OpenAI and Anthropic wire formats.

Tests, benchmarks and the demo use it when no provider API key is set. What it
answers is scripted by ``[[...]]`` directives in the last user message; see
docs/devmodel.md.
"""

from .app import create_app, serve
from .script import answer_for, tool_answer
from .settings import DevModelSettings

__all__ = ["DevModelSettings", "answer_for", "create_app", "serve", "tool_answer"]
