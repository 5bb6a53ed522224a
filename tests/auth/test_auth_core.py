"""The access-control core: key lists, bearer/X-API-Key, JWTs (HS/RS/ES256), the mesh token."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from asya_gateway.auth import (
    MESH,
    OPEN,
    AuthConfigError,
    AuthFailure,
    ClientAuth,
    MeshAuth,
    Principal,
    bearer_token,
    parse_api_keys,
)

KEYS = "alice:k-alice-123,bob:k-bob-456"
SECRET = "s3cret-long-enough-for-hs256-32bytes!"


def _pem_pair(kind: str) -> tuple[object, str]:
    key: object
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pub.decode()


def test_key_list_named_bare_and_from_a_file(tmp_path: Path) -> None:
    assert parse_api_keys(KEYS) == [("alice", "k-alice-123"), ("bob", "k-bob-456")]
    assert parse_api_keys("one, two") == [("1", "one"), ("2", "two")]
    assert parse_api_keys("svc:a:b") == [("svc", "a:b")]  # split at the first `:` only
    f = tmp_path / "keys"
    f.write_text("# comment\nalice:one\n\ntwo\n")
    assert parse_api_keys(f"@{f}") == [("alice", "one"), ("2", "two")]


def test_a_name_listed_twice_keeps_its_tasks_across_a_key_swap() -> None:
    assert parse_api_keys("alice:OLD,bob:B,alice:NEW,alice:NEW") == [
        ("alice", "OLD"),
        ("bob", "B"),
        ("alice", "NEW"),
    ]
    auth = ClientAuth.from_config("alice:k-old-1,bob:k-bob-2,alice:k-new-3", None)
    for key in ("k-old-1", "k-new-3"):
        assert auth.authenticate({"authorization": f"Bearer {key}"}) == Principal("key", "alice")
    assert auth.authenticate({"x-api-key": "k-bob-2"}) == Principal("key", "bob")
    assert repr(auth) == "ClientAuth(keys=['alice', 'bob'], jwt=False)"
    # After the swap only the new key is listed: the old one is refused, the owner unchanged.
    after = ClientAuth.from_config("alice:k-new-3,bob:k-bob-2", None)
    assert isinstance(after.authenticate({"authorization": "Bearer k-old-1"}), AuthFailure)
    assert after.authenticate({"authorization": "Bearer k-new-3"}) == Principal("key", "alice")


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("a:x,b:x", "repeats the key of 'a'"),
        (":x", "empty name or key"),
        ("a:", "empty name or key"),
        (" , ", "lists no key"),
        ("@/nonexistent/keys", "cannot read"),
    ],
)
def test_bad_key_lists_name_the_variable_never_the_key(value: str, needle: str) -> None:
    with pytest.raises(AuthConfigError, match=needle) as info:
        parse_api_keys(value)
    assert "ASYA_GATEWAY_API_KEYS" in str(info.value)
    assert "x" not in str(info.value).split(":", 1)[1].replace("lists", "").replace("exist", "")


def test_no_configuration_means_open() -> None:
    auth = ClientAuth.from_config(None, None)
    assert not auth.enabled
    assert auth.authenticate({}) is OPEN
    assert OPEN.owner is None


def test_keys_as_bearer_or_x_api_key() -> None:
    auth = ClientAuth.from_config(KEYS, None)
    assert auth.authenticate({"authorization": "Bearer k-bob-456"}) == Principal("key", "bob")
    assert auth.authenticate({"x-api-key": "k-alice-123"}) == Principal("key", "alice")
    assert Principal("key", "bob").owner == "key:bob"
    for headers in ({}, {"authorization": "Basic abc"}, {"authorization": "Bearer nope"}):
        assert isinstance(auth.authenticate(headers), AuthFailure)


def test_failure_messages_and_repr_never_contain_the_secret() -> None:
    auth = ClientAuth.from_config(KEYS, "hs256:top-secret-value")
    failure = auth.authenticate({"authorization": "Bearer k-alice-12"})
    assert isinstance(failure, AuthFailure)
    assert "k-alice" not in failure.message
    assert "k-alice" not in repr(auth) and "top-secret" not in repr(auth)
    assert "tok" not in repr(MeshAuth("tok-123"))


def test_hs256_jwt_signature_expiry_and_alg_none() -> None:
    auth = ClientAuth.from_config(None, "hs256:" + SECRET)
    good = jwt.encode({"sub": "carol", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert auth.authenticate({"authorization": f"Bearer {good}"}) == Principal("jwt", "carol")
    assert Principal("jwt", "carol").owner == "jwt:carol"
    expired = jwt.encode({"sub": "carol", "exp": time.time() - 5}, SECRET, algorithm="HS256")
    out = auth.authenticate({"authorization": f"Bearer {expired}"})
    assert isinstance(out, AuthFailure) and "expired" in out.message
    forged = jwt.encode(
        {"sub": "carol"}, "other-secret-long-enough-for-hs256-32b", algorithm="HS256"
    )
    assert isinstance(auth.authenticate({"authorization": f"Bearer {forged}"}), AuthFailure)
    unsigned = jwt.encode({"sub": "carol"}, None, algorithm="none")
    assert isinstance(auth.authenticate({"authorization": f"Bearer {unsigned}"}), AuthFailure)
    no_sub = jwt.encode({"exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert isinstance(auth.authenticate({"authorization": f"Bearer {no_sub}"}), AuthFailure)


def _hs(claims: dict[str, object]) -> dict[str, str]:
    return {"authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}


def test_a_jwt_without_exp_is_refused_and_the_401_says_why() -> None:
    auth = ClientAuth.from_config(None, "hs256:" + SECRET)
    out = auth.authenticate(_hs({"sub": "carol"}))
    assert isinstance(out, AuthFailure) and "no `exp` claim" in out.message
    soon = time.time() + 60
    assert auth.authenticate(_hs({"sub": "carol", "exp": soon})) == Principal("jwt", "carol")
    out = auth.authenticate(_hs({"sub": "carol", "exp": soon, "nbf": soon}))
    assert isinstance(out, AuthFailure) and "not valid yet" in out.message


def test_no_audience_configured_accepts_any_aud_and_iss() -> None:
    auth = ClientAuth.from_config(None, "hs256:" + SECRET)
    exp = time.time() + 60
    for claims in (
        {"aud": "some-api"},
        {"aud": ["a", "b"]},
        {"iss": "https://idp.example"},
        {"aud": "x", "iss": "y"},
    ):
        got = auth.authenticate(_hs({"sub": "carol", "exp": exp, **claims}))
        assert got == Principal("jwt", "carol"), claims


def test_audience_and_issuer_when_configured() -> None:
    auth = ClientAuth.from_config(
        None, "hs256:" + SECRET, audience="asya", issuer="https://idp.example"
    )
    ok = {"sub": "carol", "exp": time.time() + 60, "aud": "asya", "iss": "https://idp.example"}
    assert auth.authenticate(_hs(ok)) == Principal("jwt", "carol")
    assert auth.authenticate(_hs(ok | {"aud": ["other", "asya"]})) == Principal("jwt", "carol")
    for claims, needle in [
        (ok | {"aud": "other"}, "`aud` does not name"),
        (ok | {"aud": ["x", "y"]}, "`aud` does not name"),
        ({k: v for k, v in ok.items() if k != "aud"}, "no `aud` claim"),
        (ok | {"iss": "https://evil.example"}, "`iss` is not the expected issuer"),
        ({k: v for k, v in ok.items() if k != "iss"}, "no `iss` claim"),
        ({k: v for k, v in ok.items() if k != "exp"}, "no `exp` claim"),
    ]:
        out = auth.authenticate(_hs(claims))
        assert isinstance(out, AuthFailure) and needle in out.message, (claims, out)
        assert "evil" not in out.message  # a claim's value is not echoed
    # Only the audience: any issuer passes.
    aud_only = ClientAuth.from_config(None, "hs256:" + SECRET, audience="asya")
    assert aud_only.authenticate(_hs(ok | {"iss": "anyone"})) == Principal("jwt", "carol")


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS256"), ("ec", "ES256")])
def test_public_key_jwts(tmp_path: Path, kind: str, alg: str) -> None:
    private, pem = _pem_pair(kind)
    f = tmp_path / "jwt.pem"
    f.write_text(pem)
    for source in (pem, f"@{f}"):
        auth = ClientAuth.from_config(None, source)
        token = jwt.encode({"sub": "dave", "exp": time.time() + 60}, private, algorithm=alg)  # type: ignore[arg-type]
        assert auth.authenticate({"authorization": f"Bearer {token}"}) == Principal("jwt", "dave")
    # An HS256 token "signed" with the public key text must not pass (algorithm confusion).
    confused = jwt.encode({"sub": "eve"}, "x" * 64, algorithm="HS256")
    assert isinstance(auth.authenticate({"authorization": f"Bearer {confused}"}), AuthFailure)


@pytest.mark.parametrize("value", ["hs256:", "not a key", "-----BEGIN PUBLIC KEY-----\nxx\n"])
def test_bad_jwt_keys_are_refused_at_start(value: str) -> None:
    with pytest.raises(AuthConfigError, match="ASYA_GATEWAY_JWT_KEY"):
        ClientAuth.from_config(None, value)


def test_mesh_token_is_separate_from_client_keys() -> None:
    mesh = MeshAuth("mesh-tok")
    clients = ClientAuth.from_config("alice:k1", None)
    assert mesh.check({"authorization": "Bearer mesh-tok"}) is MESH
    assert isinstance(mesh.check({"authorization": "Bearer k1"}), AuthFailure)
    assert isinstance(mesh.check({"x-api-key": "mesh-tok"}), AuthFailure)  # bearer only
    assert isinstance(clients.authenticate({"authorization": "Bearer mesh-tok"}), AuthFailure)
    assert MeshAuth(None).check({}) is OPEN
    assert not MeshAuth("").enabled


def test_mesh_token_list_for_a_rolling_rotation() -> None:
    mesh = MeshAuth(" tok-old , tok-new ,")
    assert mesh.enabled
    for token in ("tok-old", "tok-new"):
        assert mesh.check({"authorization": f"Bearer {token}"}) is MESH
    for token in ("tok-old,tok-new", "tok", "", ","):
        assert isinstance(mesh.check({"authorization": f"Bearer {token}"}), AuthFailure), token
    assert not MeshAuth(" , ").enabled
    assert MeshAuth(",").check({}) is OPEN
    assert "tok" not in repr(mesh)
    # After the swap only the new token is accepted.
    assert isinstance(MeshAuth("tok-new").check({"authorization": "Bearer tok-old"}), AuthFailure)


def test_bearer_token_parsing() -> None:
    assert bearer_token({"authorization": "bearer  abc "}) == "abc"
    assert bearer_token({"authorization": "Bearer"}) is None
    assert bearer_token({"authorization": "Token abc", "x-api-key": "k"}) is None
    assert bearer_token({"x-api-key": " k "}) == "k"


_header_text = st.text(st.characters(codec="latin-1"), max_size=80)


@settings(max_examples=500, deadline=None)
@given(
    auth_header=st.one_of(st.none(), _header_text, _header_text.map(lambda s: "Bearer " + s)),
    api_key=st.one_of(st.none(), _header_text),
)
def test_fuzzed_headers_never_raise_and_never_bypass(
    auth_header: str | None, api_key: str | None
) -> None:
    auth = ClientAuth.from_config(KEYS, "hs256:" + SECRET)
    mesh = MeshAuth("mesh-tok")
    headers = {}
    if auth_header is not None:
        headers["authorization"] = auth_header
    if api_key is not None:
        headers["x-api-key"] = api_key
    out = auth.authenticate(headers)
    presented = bearer_token(headers)
    if isinstance(out, Principal):
        assert presented in ("k-alice-123", "k-bob-456")
    assert (mesh.check(headers) is MESH) == (presented == "mesh-tok" and auth_header is not None)


def test_a_mesh_token_of_only_commas_is_no_token_and_is_warned_about() -> None:
    from asya_gateway.cli import start_warnings
    from asya_gateway.config import GatewayConfig

    clients = ClientAuth.from_config("alice:k-alice-123456", None)
    for none in (None, "", ",", " , "):
        assert not MeshAuth(none).enabled
        warned = start_warnings(GatewayConfig(mesh_token=none), clients)
        assert any("ASYA_GATEWAY_MESH_TOKEN is not" in w for w in warned), none
    assert start_warnings(GatewayConfig(mesh_token="t1,t2"), clients) == []
