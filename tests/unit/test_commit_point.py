"""When a stream may be committed: the first event with something the client would see."""

from __future__ import annotations

import pytest

from llm_proxy.attempt import has_content

ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (ROLE, False),
        (b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n', False),
        (b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n', True),
        (ROLE + b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n', True),
        (b'data: {"choices":[{"delta":{"reasoning_content":"hmm"}}]}\n\n', True),
        (b'data: {"choices":[{"delta":{"refusal":"no"}}]}\n\n', True),
        (b'data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n', True),
        (b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n', True),
        # JSON written with spaces (Python's json.dumps): the regex path
        (b'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}\n\n', False),
        (b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n', True),
        (b'data: {"choices": [{"delta": {}, "finish_reason": "length"}]}\n\n', True),
        # text that looks like a key inside content is escaped, so it does not count
        (b'data: {"choices":[{"delta":{"content":""},"x":"\\"content\\":\\"y"}]}\n\n', False),
    ],
)
def test_has_content(events: bytes, expected: bool) -> None:
    assert has_content(events) is expected
