"""Bearer-token authentication: static tokens from configuration and JWTs.

* Static tokens: ``THREADLINE_TOKENS=token:owner[:admin],...`` (``Settings.tokens``).
  Looked up by SHA-256 digest, so comparing never leaks a token through timing; the
  tokens are registered with the process-wide redactor and never logged.
* JWT: HS256 with a shared secret and/or RS256 with a public key; ``exp`` and ``sub``
  are required, ``iss`` and ``aud`` are checked when configured; ``sub`` is the owner,
  ``"admin"`` in the roles claim makes an admin.

Every route but ``/healthz``, ``/readyz``, ``/metrics`` and the OpenAPI schema goes
through :class:`BearerAuthMiddleware`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Annotated, Any

import jwt
import msgspec
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from threadline.base.config import Settings
from threadline.base.errors import ConfigurationError
from threadline.base.redact import register_secret
from threadline.services.gateway.errors import unauthorized
from threadline.services.gateway.options import GatewayOptions, JwtOptions

ADMIN_ROLE = "admin"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: the owner their sessions belong to, and whether they are an admin."""

    owner: str
    admin: bool = False
    #: when the credential expires (Unix time), for JWTs
    expires_at: float | None = None

    @property
    def actor(self) -> str:
        return f"user:{self.owner}"

    def can_read(self, owner: str) -> bool:
        return self.admin or owner == self.owner


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(spec: str | None) -> dict[bytes, Principal]:
    """``token:owner[:admin],...`` into principals keyed by the token's SHA-256 digest."""
    table: dict[bytes, Principal] = {}
    for index, item in enumerate(filter(None, (p.strip() for p in (spec or "").split(",")))):
        parts = item.split(":")
        flags = parts[2:]
        if len(parts) < 2 or not parts[0] or not parts[1] or flags not in ([], [ADMIN_ROLE]):
            raise ConfigurationError(
                f"THREADLINE_TOKENS entry {index + 1} is not 'token:owner' or 'token:owner:admin'"
            )
        table[_digest(parts[0])] = Principal(owner=parts[1], admin=bool(flags))
        register_secret(parts[0])
    return table


class Authenticator:
    def __init__(self, tokens: str | None, jwt_options: JwtOptions | None = None) -> None:
        self._tokens = parse_tokens(tokens)
        self._jwt = jwt_options if jwt_options is not None and jwt_options.enabled else None
        if self._jwt is not None:
            register_secret(self._jwt.secret)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value, or a 401 :class:`Problem`."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        found = self._tokens.get(_digest(token))
        if found is not None:
            return found
        if self._jwt is not None and token.count(".") == 2:
            return self._verify_jwt(token, self._jwt)
        raise unauthorized("the bearer token is not valid")

    def _verify_jwt(self, token: str, options: JwtOptions) -> Principal:
        try:
            alg = jwt.get_unverified_header(token).get("alg")
            key = {"HS256": options.secret, "RS256": options.public_key}.get(str(alg))
            if not key:
                raise unauthorized("the token's algorithm is not accepted")
            required = ["exp", "sub"]
            required += ["iss"] if options.issuer else []
            required += ["aud"] if options.audience else []
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                issuer=options.issuer,
                audience=options.audience,
                leeway=options.leeway_s,
                options={"require": required, "verify_aud": options.audience is not None},
            )
            # pyjwt checks times but takes "1999999999" for one; RFC 7519 wants a number
            checked = msgspec.convert(claims, _Claims)
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired") from None
        except (jwt.PyJWTError, msgspec.ValidationError):
            raise unauthorized("the bearer token is not valid") from None
        roles = claims.get(options.roles_claim)
        admin = roles == ADMIN_ROLE or (isinstance(roles, list) and ADMIN_ROLE in roles)
        return Principal(owner=checked.sub, admin=admin, expires_at=checked.exp)


class _Claims(msgspec.Struct):
    """The registered claims we use, typed as RFC 7519 says (strictly: no strings)."""

    sub: Annotated[str, msgspec.Meta(min_length=1)]
    exp: float
    nbf: float | None = None
    iat: float | None = None


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Puts the caller's :class:`Principal` in ``request.user`` or answers 401."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        super().__init__(app)
        self.authenticator = authenticator

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Any:
        principal = self.authenticator.authenticate(connection.headers.get("authorization"))
        return AuthenticationResult(user=principal, auth=None)


def ensure_dev_token(
    settings: Settings,
    options: GatewayOptions | None = None,
    *,
    make: Callable[[], str] | None = None,
) -> tuple[Settings, str | None]:
    """When no static token and no JWT key is configured, make a dev token (``make()``,
    else a random one).

    Returns the settings to use (with ``tokens`` set to ``<token>:dev``) and the
    token for the caller to show; ``(settings, None)`` when auth is configured.
    """
    jwt_options = (options or GatewayOptions.from_env()).jwt
    if settings.tokens or jwt_options.enabled:
        return settings, None
    token = make() if make else secrets.token_urlsafe(32)
    return msgspec.structs.replace(settings, tokens=f"{token}:dev"), token
