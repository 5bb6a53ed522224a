"""Token streaming, like an LLM: FLY each word/sub-word token, then the payload with the text.

asya-runtime run examples.handlers.tokens:stream
"""

import asyncio
import random
import re

_REPLY = (
    "Actors stream tokens while they think: each one reaches the client the moment it is "
    "produced, long before the final answer travels on to the next actor."
)


def _tokens(text: str) -> list[str]:
    # Words with their leading space, long words split in two (sub-word tokens).
    out: list[str] = []
    for word in re.findall(r"\s*\S+", text):
        if len(word.strip()) > 7:
            cut = len(word) // 2 + 1
            out += [word[:cut], word[cut:]]
        else:
            out.append(word)
    return out


async def stream(payload):
    prompt = payload.get("prompt") if isinstance(payload, dict) else None
    if prompt:
        prompt = str(prompt).strip()
        stop = "" if prompt.endswith((".", "?", "!")) else "."  # no "why?." in the reply
        reply = f"You asked: {prompt}{stop} {_REPLY}"
    else:
        reply = _REPLY
    delay = payload.get("token_delay") if isinstance(payload, dict) else None
    parts = []
    for tok in _tokens(reply):
        await asyncio.sleep(delay if delay is not None else random.uniform(0.03, 0.08))
        parts.append(tok)
        yield "FLY", {"partial": True, "text": tok}
    if not isinstance(payload, dict):
        payload = {"input": payload}
    payload["text"] = "".join(parts)
    yield payload
