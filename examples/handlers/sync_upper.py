"""A sync function handler (runs in a worker thread): upper-cases payload["text"]."""


def upper(payload):
    payload["text"] = str(payload.get("text", "")).upper()
    return payload
