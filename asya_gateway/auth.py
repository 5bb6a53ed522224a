"""Who may do what (gateway.md "Who may do what"): client keys, JWTs and the sidecars' mesh token.

Pure: configuration strings in, `ClientAuth` / `MeshAuth` out; request headers in, a `Principal`
or an `AuthFailure` naming the problem out. No HTTP framework here; each door turns a failure
into its own protocol's 401. Secrets are compared in constant time and never appear in a
message, a repr or a log line; only an owner's `key:NAME` / `jwt:SUB` leaves this module.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Final, Literal

import msgspec

_JWT_ALGORITHMS_PEM: Final = ["RS256", "ES256"]
_JWT_ALGORITHMS_HS: Final = ["HS256"]


class AuthConfigError(ValueError):
    """A key list or JWT key that cannot be used; the message names the variable, never a secret."""


class Principal(msgspec.Struct, frozen=True):
    """An authenticated caller. `owner` is what the task store keeps (`key:NAME` / `jwt:SUB`)."""

    kind: Literal["key", "jwt", "mesh", "open"]
    name: str

    @property
    def owner(self) -> str | None:
        """The owner string stored with a task; None when access control is off."""
        if self.kind in ("key", "jwt"):
            return f"{self.kind}:{self.name}"
        return None


OPEN: Final = Principal("open", "")
MESH: Final = Principal("mesh", "")

#: The caller of the request being served (OPEN outside a request, or with auth off). Set by
#: the gateway's guard; the task engine reads it to stamp and check task owners.
current_principal: ContextVar[Principal] = ContextVar("asya_principal", default=OPEN)


def may_see(principal: Principal, owner: str | None) -> bool:
    """Whether `principal` may see a task of `owner`: open and mesh see every task; a client
    only its own (a task created with access control off has no owner: no client's)."""
    if principal.kind in ("open", "mesh"):
        return True
    return owner is not None and owner == principal.owner  # owners are names, not secrets


class AuthFailure(msgspec.Struct, frozen=True):
    """Why a request is refused (safe to show: it never contains the presented secret)."""

    message: str


def _read_source(value: str, var: str) -> str:
    """`@FILE` → the file's text; anything else as it is."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_text()
        except OSError as exc:
            raise AuthConfigError(f"{var}: cannot read {str(path)!r}: {exc.strerror}") from None
    return value


def _digest(secret: str) -> bytes:
    # Compare digests, not the strings: equal-length inputs, so the comparison time says nothing
    # about the key's length or prefix.
    return hashlib.sha256(secret.encode()).digest()


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The credential a request carries: `Authorization: Bearer X`, else `X-API-Key: X`."""
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    key = headers.get("x-api-key")
    if key is not None and key.strip():
        return key.strip()
    return None


class ClientAuth:
    """Client credentials: named API keys and/or one JWT verification key. Off when neither."""

    def __init__(
        self,
        keys: Iterable[tuple[str, str]] | Mapping[str, str] | None = None,
        jwt_key: str | None = None,
        *,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        # (name, digest of the key) pairs: several keys at once make rotation without downtime
        # easy, and a name listed twice keeps its tasks while its key is swapped.
        pairs = keys.items() if isinstance(keys, Mapping) else (keys or ())
        self._keys = [(name, _digest(k)) for name, k in pairs]
        self._jwt_key: str | None = None
        self._jwt_algorithms: list[str] = []
        self._audience = audience or None
        self._issuer = issuer or None
        if jwt_key is not None:
            if jwt_key.startswith("hs256:"):
                self._jwt_key, self._jwt_algorithms = jwt_key[6:], _JWT_ALGORITHMS_HS
                if not self._jwt_key:
                    raise AuthConfigError("ASYA_GATEWAY_JWT_KEY: `hs256:` needs a secret after it")
            elif "-----BEGIN" in jwt_key:
                self._jwt_key, self._jwt_algorithms = jwt_key, _JWT_ALGORITHMS_PEM
                _check_pem(jwt_key)
            else:
                raise AuthConfigError(
                    "ASYA_GATEWAY_JWT_KEY: expected a PEM public key, @FILE or hs256:SECRET"
                )

    @classmethod
    def from_config(
        cls,
        api_keys: str | None,
        jwt_key: str | None,
        *,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> ClientAuth:
        """From `ASYA_GATEWAY_API_KEYS`, `ASYA_GATEWAY_JWT_KEY` (either may be None/empty) and
        `ASYA_GATEWAY_JWT_AUDIENCE` / `ASYA_GATEWAY_JWT_ISSUER` (None: not checked)."""
        keys = parse_api_keys(api_keys) if api_keys else []
        pem = _read_source(jwt_key, "ASYA_GATEWAY_JWT_KEY").strip() if jwt_key else None
        return cls(keys, pem or None, audience=audience, issuer=issuer)

    @property
    def enabled(self) -> bool:
        return bool(self._keys) or self._jwt_key is not None

    @property
    def schemes(self) -> list[str]:
        """What a client may present (for cards and docs): `apiKey`, `bearer`."""
        out = []
        if self._keys:
            out.append("apiKey")
        if self._keys or self._jwt_key is not None:
            out.append("bearer")
        return out

    def authenticate(self, headers: Mapping[str, str]) -> Principal | AuthFailure:
        """The caller of a client endpoint, or why it is refused. Headers: lower-case names."""
        if not self.enabled:
            return OPEN
        token = bearer_token(headers)
        if token is None:
            return AuthFailure(
                "missing credentials: send `Authorization: Bearer <key or JWT>` or `X-API-Key`"
            )
        presented = _digest(token)
        matched: str | None = None
        for name, digest in self._keys:
            # Every key is compared (no early exit): timing does not tell which one matched.
            if hmac.compare_digest(presented, digest):
                matched = name
        if matched is not None:
            return Principal("key", matched)
        if self._jwt_key is not None and token.count(".") == 2:
            return self._verify_jwt(token)
        return AuthFailure("invalid credentials: unknown API key")

    def _verify_jwt(self, token: str) -> Principal | AuthFailure:
        import jwt  # PyJWT: imported only when JWTs are configured

        try:
            claims = jwt.decode(
                token,
                self._jwt_key,  # type: ignore[arg-type]
                algorithms=self._jwt_algorithms,  # never "none"
                # `exp` required: a token without one would be valid forever. With no audience
                # configured, a token's `aud` is not checked (PyJWT would refuse every token
                # that has one); with one, the token must name it (likewise `iss`).
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": ["sub", "exp"],
                    "verify_exp": True,
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            return AuthFailure("invalid credentials: the JWT has expired")
        except jwt.MissingRequiredClaimError as exc:
            return AuthFailure(f"invalid credentials: the JWT has no `{exc.claim}` claim")
        except jwt.InvalidAudienceError:
            return AuthFailure(
                "invalid credentials: the JWT's `aud` does not name this gateway's audience"
            )
        except jwt.InvalidIssuerError:
            return AuthFailure("invalid credentials: the JWT's `iss` is not the expected issuer")
        except jwt.ImmatureSignatureError:
            return AuthFailure("invalid credentials: the JWT is not valid yet (`nbf`/`iat`)")
        except jwt.InvalidTokenError as exc:
            return AuthFailure(f"invalid credentials: JWT rejected ({type(exc).__name__})")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            return AuthFailure("invalid credentials: the JWT has no `sub`")
        return Principal("jwt", sub)

    def __repr__(self) -> str:  # never show a key
        names = sorted({name for name, _ in self._keys})
        return f"ClientAuth(keys={names}, jwt={self._jwt_key is not None})"


class MeshAuth:
    """The sidecars' token for the event, pre-flight and pause endpoints. Off when unset.

    `ASYA_GATEWAY_MESH_TOKEN` may list several tokens, comma-separated, any one of which is
    accepted: a rolling rotation adds the new token, moves the sidecars, then drops the old."""

    def __init__(self, token: str | None) -> None:
        tokens = [t.strip() for t in (token or "").split(",")]
        self._digests = [_digest(t) for t in tokens if t]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def is_mesh(self, headers: Mapping[str, str]) -> bool:
        """True when the request carries a mesh token (always False when none is set)."""
        if not self._digests:
            return False
        auth = headers.get("authorization", "")
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        presented = _digest(token.strip())
        matched = False
        for digest in self._digests:  # every token compared: timing does not tell which
            matched |= hmac.compare_digest(presented, digest)
        return matched

    def check(self, headers: Mapping[str, str]) -> Principal | AuthFailure:
        """For sidecar-only endpoints: MESH, OPEN when no token is configured, else a failure."""
        if not self._digests:
            return OPEN
        if self.is_mesh(headers):
            return MESH
        return AuthFailure("sidecar endpoint: send the mesh token as `Authorization: Bearer`")

    def __repr__(self) -> str:
        return f"MeshAuth(enabled={self.enabled})"


def parse_api_keys(value: str) -> list[tuple[str, str]]:
    """`ASYA_GATEWAY_API_KEYS`: comma-separated (or `@FILE`, one per line) `name:key` or bare
    keys; a bare key is named by its 1-based position. A name may be listed more than once
    (`alice:OLD,alice:NEW`: rotation keeping alice's tasks); one key under two names is
    refused (its owner would be ambiguous). `(name, key)` pairs; raises AuthConfigError."""
    text = _read_source(value, "ASYA_GATEWAY_API_KEYS")
    separator = "\n" if value.startswith("@") else ","
    entries = [e.strip() for e in text.split(separator)]
    pairs: list[tuple[str, str]] = []
    owner_of: dict[str, str] = {}
    for position, entry in enumerate((e for e in entries if e and not e.startswith("#")), 1):
        name, sep, key = entry.partition(":")
        if not sep:
            name, key = str(position), entry
        name, key = name.strip(), key.strip()
        if not name or not key:
            raise AuthConfigError(
                f"ASYA_GATEWAY_API_KEYS: entry {position} has an empty name or key"
            )
        first = owner_of.setdefault(key, name)
        if first != name:
            raise AuthConfigError(
                f"ASYA_GATEWAY_API_KEYS: entry {position} ({name!r}) repeats the key of {first!r}"
            )
        if (name, key) not in pairs:
            pairs.append((name, key))
    if not pairs:
        raise AuthConfigError("ASYA_GATEWAY_API_KEYS: set but lists no key")
    return pairs


def _check_pem(pem: str) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise AuthConfigError(
            f"ASYA_GATEWAY_JWT_KEY: not a PEM public key ({type(exc).__name__})"
        ) from None


__all__ = [
    "MESH",
    "OPEN",
    "AuthConfigError",
    "AuthFailure",
    "ClientAuth",
    "MeshAuth",
    "Principal",
    "bearer_token",
    "current_principal",
    "may_see",
    "parse_api_keys",
]
