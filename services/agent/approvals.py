"""Which tool calls wait for a person's approval: the deployment's rules per tool server
and per tool, and the session's own choice (docs/human-in-the-loop.md).

A server's table in ``[mcp_servers]`` may carry ``approval``: ``"never"`` (the default),
``"always"``, or a table by tool name (unprefixed; ``"*"``: the server's other tools)
whose values are ``"never"``, ``"always"`` or a rule ``{argument = "regex"}``: the call
waits when any named argument (its JSON text, for a value that is not a string) matches.
A session created with ``"approval": "always"`` waits for every call, whatever the rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from threadline.base.errors import ConfigurationError
from threadline.events.fold import SessionState
from threadline.events.schema import ToolCallRef
from threadline.services.agent.tools import split_prefixed

Policy = Literal["never", "always"]
#: a tool's rule: a policy, or argument name -> the pattern that makes a call wait
Rule = Policy | dict[str, re.Pattern[str]]


class ApprovalRules:
    """The deployment's rules, by server and tool (none: no call waits)."""

    def __init__(self, servers: Mapping[str, Any] | None = None) -> None:
        self._rules: dict[str, dict[str, Rule]] = {}
        for server, table in (servers or {}).items():
            raw = table.get("approval", "never") if isinstance(table, Mapping) else "never"
            per_tool = raw if isinstance(raw, Mapping) else {"*": raw}
            self._rules[server] = {
                tool: _rule(f"mcp_servers.{server}.approval.{tool}", value)
                for tool, value in per_tool.items()
            }

    def needs(self, state: SessionState, call: ToolCallRef) -> bool:
        """Whether ``call`` (a prefixed tool name) of ``state``'s session waits."""
        if state.approval == "always":
            return True
        server, tool = split_prefixed(call.tool) or ("", call.tool)
        rules = self._rules.get(server, {})
        rule = rules.get(tool, rules.get("*", "never"))
        if isinstance(rule, str):
            return rule == "always"
        return any(
            pattern.search(_text(call.arguments[name]))
            for name, pattern in rule.items()
            if name in call.arguments
        )


def _rule(where: str, value: object) -> Rule:
    if value in ("never", "always"):
        return "always" if value == "always" else "never"
    if isinstance(value, Mapping) and value:
        try:
            return {str(k): re.compile(str(v)) for k, v in value.items()}
        except re.error as exc:
            raise ConfigurationError(f"{where}: not a regular expression: {exc}") from None
    raise ConfigurationError(
        f'{where}: "never", "always" or a table of argument patterns, not {value!r}'
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
