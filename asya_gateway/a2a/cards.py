"""Agent cards (pure): the gateway's card (one skill per A2A flow) and one card per flow.

Each card carries v1.0's `supportedInterfaces` and, beside it, v0.3's `url` / `protocolVersion` /
`preferredTransport`, so clients of either version find the JSON-RPC endpoint.
"""

from __future__ import annotations

from typing import Any

from asya_gateway.flows import Flow, Flows


def _skill(flow: Flow) -> dict[str, Any]:
    skill: dict[str, Any] = {
        "id": flow.name,
        "name": flow.name,
        "description": flow.description or f"the {flow.name} flow",
        "tags": list(flow.tags) or [flow.name],
    }
    if flow.examples:
        skill["examples"] = list(flow.examples)
    return skill


#: Each scheme in v1.0's shape (`httpAuthSecurityScheme`, ...) and, beside it, v0.3's (`type`).
_SCHEMES: dict[str, dict[str, Any]] = {
    "bearer": {
        "httpAuthSecurityScheme": {"scheme": "Bearer", "description": "an API key or a JWT"},
        "type": "http",
        "scheme": "bearer",
    },
    "apiKey": {
        "apiKeySecurityScheme": {"location": "header", "name": "X-API-Key"},
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    },
}


def security(schemes: list[str]) -> dict[str, Any]:
    """The card fields declaring the client credentials the gateway takes (empty: open)."""
    if not schemes:
        return {}
    return {
        "securitySchemes": {s: _SCHEMES[s] for s in schemes},
        "securityRequirements": [{"schemes": {s: {"list": []}}} for s in schemes],
        "security": [{s: []} for s in schemes],  # v0.3: any one of them
    }


def _card(
    name: str,
    description: str,
    url: str,
    skills: list[dict[str, Any]],
    schemes: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
        ],
        "capabilities": {"streaming": True, "pushNotifications": False},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
        # v0.3 fields, for clients of upstream's gateway
        "url": url,
        "protocolVersion": "0.3.0",
        "preferredTransport": "JSONRPC",
        **security(schemes or []),
    }


def gateway_card(flows: Flows, public_url: str, schemes: list[str] | None = None) -> dict[str, Any]:
    base = public_url.rstrip("/")
    return _card(
        "asya-gateway",
        "An Asya actor mesh: each skill is a flow (name it in `metadata.skill`).",
        f"{base}/a2a",
        [_skill(f) for f in flows.a2a()],
        schemes,
    )


def flow_card(flow: Flow, public_url: str, schemes: list[str] | None = None) -> dict[str, Any]:
    base = public_url.rstrip("/")
    return _card(
        flow.name,
        flow.description or f"the {flow.name} flow of an Asya actor mesh",
        f"{base}/a2a/{flow.name}",
        [_skill(flow)],
        schemes,
    )


__all__ = ["flow_card", "gateway_card", "security"]
