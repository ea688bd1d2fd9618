"""Directive parsing and planning, without a server."""

from __future__ import annotations

import pytest

from threadline.services.devmodel import DevModelSettings, anthropic_wire, openai_wire
from threadline.services.devmodel.conversation import Conversation, ToolResult
from threadline.services.devmodel.directives import FailDirective, ToolDirective, parse_directives
from threadline.services.devmodel.script import Failure, FailureLedger, Script, plan


def test_tool_directives_with_steps_and_tricky_json() -> None:
    found = parse_directives(
        'a [[tool:echo {"s": "x]]y", "n": [1, {"k": null}]}]] b '
        "[[tool:srv__add step=2 {}]] [[tool:noargs]] c"
    )
    assert found.tools == [
        ToolDirective("echo", 0, {"s": "x]]y", "n": [1, {"k": None}]}),
        ToolDirective("srv__add", 2, {}),
        ToolDirective("noargs", 0, {}),
    ]
    assert found.text == "a b c"


@pytest.mark.parametrize(
    "text",
    [
        "[[tool:echo {not json}]]",
        "[[tool:echo [1, 2]]]",
        "[[fail:200]]",
        "[[fail:often]]",
        "[[stall:-5]]",
        "[[stall:100 after=x]]",
        "[[pace:ttft=5,tps=fast]]",
        "[[words:many]]",
        "[[pace:ttft=1 extra]]",
        "[[reason:]]",
        "[[words:3",
    ],
)
def test_malformed_directives_stay_as_text(text: str) -> None:
    found = parse_directives(text)
    assert found.text == text
    assert (found.tools, found.fail, found.stall_ms, found.words, found.reason) == (
        [],
        None,
        0.0,
        None,
        None,
    )
    assert (found.ttft_ms, found.tokens_per_second, found.drop_after) == (None, None, None)


def test_fault_and_pace_directives() -> None:
    found = parse_directives(
        "x [[fail:429 retry-after=1.5 times=2]] [[drop:after=4]] [[stall:250 after=3]] "
        "[[pace:ttft=10,tps=20]] [[words:7]] [[reason:Think  it over]] y"
    )
    assert found.fail == FailDirective("status", 429, 1.5, 2)
    assert (found.drop_after, found.stall_ms, found.stall_after) == (4, 250.0, 3)
    assert (found.ttft_ms, found.tokens_per_second, found.words) == (10.0, 20.0, 7)
    assert found.reason == "Think  it over"
    assert found.text == "x y"
    assert parse_directives("[[fail:400-notools]]").fail == FailDirective("notools", 400)
    assert parse_directives("[[fail:context times=1]]").fail == FailDirective(
        "context", 400, None, 1
    )
    assert parse_directives("[[drop:2]]").drop_after == 2


def conversation(text: str, **changes: object) -> Conversation:
    conv = Conversation(model="m", user_text=text, key_material=[text], prompt_tokens=3)
    for name, value in changes.items():
        setattr(conv, name, value)
    return conv


def run(conv: Conversation, ledger: FailureLedger | None = None) -> Script | Failure:
    return plan(conv, DevModelSettings.fast(), ledger or FailureLedger())


def test_steps_follow_the_tool_call_rounds() -> None:
    text = '[[tool:a {"i": 0}]] [[tool:b step=1 {"i": 1}]] [[tool:a step=1 {"i": 2}]]'
    tools = ["a", "x__b"]
    first = run(conversation(text, tools=tools))
    assert isinstance(first, Script)
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("a", '{"i":0}')]
    second = run(conversation(text, tools=tools, rounds=1))
    assert isinstance(second, Script)
    assert [c.name for c in second.tool_calls] == ["x__b", "a"]
    results = [ToolResult("x__b", "B"), ToolResult("a", "A")]
    last = run(conversation(text, tools=tools, rounds=2, results=results))
    assert isinstance(last, Script) and last.finish == "stop"
    assert "".join(last.text) == "Tool x__b returned: B Tool a returned: A"


def test_times_counts_per_conversation_key() -> None:
    ledger = FailureLedger()
    conv = conversation("[[fail:503 times=2]]")
    outcomes = [run(conv, ledger) for _ in range(3)]
    assert [type(o).__name__ for o in outcomes] == ["Failure", "Failure", "Script"]
    assert isinstance(run(conversation("other [[fail:503 times=2]]"), ledger), Failure)


@pytest.mark.parametrize(
    "text",
    [
        "plain words here",
        "[[reason:a b c]] [[words:4]]",
        '[[reason:r]] [[tool:t {"long": "' + "z" * 50 + '"}]] [[tool:t {}]]',
    ],
)
def test_token_frames_match_the_output_token_count(text: str) -> None:
    conv = conversation(text, tools=["t"], include_usage=True)
    script = run(conv)
    assert isinstance(script, Script)
    for frames in (openai_wire.stream(script, conv), anthropic_wire.stream(script, conv)):
        assert sum(frame.token for frame in frames) == script.output_tokens
