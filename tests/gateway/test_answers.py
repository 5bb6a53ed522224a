"""An answer merged into a paused task's payload (`asya_gateway.answers`), for any message."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from asya_gateway.answers import merge_payload, message_patch

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["parts", "role", "x"]), _json))
def test_any_message_gives_a_patch_never_an_exception(message: dict[str, Any]) -> None:
    patch = message_patch(message)
    assert isinstance(patch, dict)
    parts = message.get("parts") if isinstance(message.get("parts"), list) else []
    texts = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
    assert patch.get("query") == ("\n".join(texts) if texts else None)


def test_texts_become_query_and_data_objects_merge() -> None:
    msg = {"parts": [{"text": "yes"}, {"data": {"n": 2}}, {"text": "go"}], "role": "user"}
    assert message_patch(msg) == {"n": 2, "query": "yes\ngo"}
    merged = merge_payload({"q": 1}, message_patch(msg), msg)
    assert merged["q"] == 1 and merged["query"] == "yes\ngo" and merged["n"] == 2
    assert merged["a2a"]["task"]["history"] == [msg]
