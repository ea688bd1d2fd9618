"""Static tokens and JWTs (HS256, RS256): issuer, audience, expiry, signature, roles."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from tests.gateway.harness import (
    AUDIENCE,
    HS_SECRET,
    ISSUER,
    OTHER_PRIVATE_KEY,
    PRIVATE_KEY,
    PUBLIC_KEY,
    Harness,
    make_jwt,
)
from threadline.base.config import Settings
from threadline.base.errors import ConfigurationError
from threadline.base.redact import redact
from threadline.services.gateway import GatewayOptions, JwtOptions, ensure_dev_token
from threadline.services.gateway.auth import Authenticator, parse_tokens


def forge_hs256(key: bytes) -> str:
    """An HS256 token whose HMAC key is ``key`` (pyjwt refuses to make this one)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = {"sub": "jane", "exp": int(time.time()) + 300, "iss": ISSUER, "aud": AUDIENCE}
    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "."
    signing += b64(json.dumps(claims).encode())
    signature = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(signature)}"


async def test_valid_hs256_and_rs256_tokens_authenticate_as_their_subject(gw: Harness) -> None:
    for token in (make_jwt("jane"), make_jwt("jane", key=PRIVATE_KEY, alg="RS256")):
        response = await gw.client(token).post("/v1/sessions", json={"title": "jwt"})
        assert response.status_code == 201, response.text
        (rec,) = await gw.store.load(response.json()["id"])
        assert rec.envelope.actor == "user:jane"


BAD_TOKENS = {
    "wrong HS256 secret": make_jwt(key="another-secret-that-is-long-enough-0123456789"),
    "RS256 signed by another key": make_jwt(key=OTHER_PRIVATE_KEY, alg="RS256"),
    "wrong issuer": make_jwt(iss="https://evil.test"),
    "no issuer": make_jwt(iss=None),
    "wrong audience": make_jwt(aud="someone-else"),
    "no audience": make_jwt(aud=None),
    "expired": make_jwt(exp_in=-3600),
    # RFC 7519: NumericDate is a JSON number; pyjwt alone takes "1999999999" for one
    "exp a numeric string": make_jwt(exp=str(int(time.time()) + 300)),
    "exp a float string": make_jwt(exp=f"{time.time() + 300}"),
    "exp true": make_jwt(exp=True),
    "nbf a numeric string": make_jwt(nbf=str(int(time.time()) - 10)),
    "iat a numeric string": make_jwt(iat=str(int(time.time()) - 10)),
    "no subject": make_jwt(sub=None),
    "empty subject": make_jwt(sub=""),
    "alg none": jwt.encode({"sub": "jane", "exp": 2**40}, None, algorithm="none"),
    "HS256 keyed with the RS256 public key": forge_hs256(PUBLIC_KEY.encode()),
    "garbage": "a.b.c",
    "unknown static token": "nope-nope-nope",
}


@pytest.mark.parametrize("token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_tokens_are_401(gw: Harness, token: str) -> None:
    response = await gw.client(token).get("/v1/sessions")
    assert response.status_code == 401
    assert token not in response.text


async def test_expired_token_says_so(gw: Harness) -> None:
    response = await gw.client(make_jwt(exp_in=-3600)).get("/v1/sessions")
    assert response.json()["error"]["message"] == "the token has expired"


@pytest.mark.parametrize("header", ["Basic YWxpY2U6eA==", "Bearer", "Bearer  x y", "alice-token"])
async def test_malformed_authorization_headers_are_401(gw: Harness, header: str) -> None:
    response = await gw.client(None).get("/v1/sessions", headers={"Authorization": header})
    assert response.status_code == 401


async def test_admin_role_claim_makes_an_admin(gw: Harness) -> None:
    session = await gw.new_session(title="alice's")
    admin = make_jwt("auditor", roles=["reader", "admin"])
    plain = make_jwt("auditor", roles=["reader"])
    assert (await gw.client(admin).get(f"/v1/sessions/{session}")).status_code == 200
    assert (await gw.client(plain).get(f"/v1/sessions/{session}")).status_code == 404


def test_static_tokens_parse_and_are_registered_with_the_redactor() -> None:
    table = parse_tokens("tok-aaaaaa:ann, tok-bbbbbb:ben:admin")
    assert sorted((p.owner, p.admin) for p in table.values()) == [("ann", False), ("ben", True)]
    assert "tok-aaaaaa" not in redact("header was tok-aaaaaa")


@pytest.mark.parametrize(
    "spec", ["sekr3t", ":sekr3t", "sekr3t:", "sekr3t:own:root", "sekr3t:b:admin:x", "ok:a,sekr3t"]
)
def test_bad_token_specs_are_configuration_errors_that_do_not_echo_them(spec: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_tokens(spec)
    assert "sekr3t" not in str(info.value)


def test_authenticator_without_jwt_refuses_jwts() -> None:
    auth = Authenticator("t0ken-abc:ann", None)
    assert auth.authenticate("Bearer t0ken-abc").owner == "ann"
    with pytest.raises(Exception, match="not valid"):
        auth.authenticate(f"Bearer {make_jwt()}")


def test_dev_token_only_when_nothing_is_configured() -> None:
    settings, token = ensure_dev_token(Settings(), GatewayOptions())
    assert token is not None and len(token) >= 32
    principal = Authenticator(settings.tokens).authenticate(f"Bearer {token}")
    assert (principal.owner, principal.admin) == ("dev", False)
    assert ensure_dev_token(Settings(tokens="x-token:me"), GatewayOptions()) == (
        Settings(tokens="x-token:me"),
        None,
    )
    with_jwt = GatewayOptions(jwt=JwtOptions(secret=HS_SECRET, audience=AUDIENCE))
    assert ensure_dev_token(Settings(), with_jwt)[1] is None


def test_options_from_environment() -> None:
    options = GatewayOptions.from_env(
        {
            "THREADLINE_GATEWAY_HEARTBEAT_S": "2.5",
            "THREADLINE_GATEWAY_MAX_SSE_PER_OWNER": "3",
            "THREADLINE_JWT_SECRET": HS_SECRET,
            "THREADLINE_JWT_ISSUER": "https://i",
        }
    )
    assert (options.heartbeat_s, options.max_sse_per_owner) == (2.5, 3)
    assert options.jwt.secret == HS_SECRET and options.jwt.issuer == "https://i"
    assert HS_SECRET not in repr(options.jwt)
    with pytest.raises(ConfigurationError):
        GatewayOptions.from_env({"THREADLINE_GATEWAY_SSE_BUFFER": "many"})
