"""OIDC bearer tokens: JWTs signed by a key of a configured JWKS (PyJWT with ``cryptography``).

``STACUBE_OIDC_JWKS`` names the key set: an ``https://`` URL (the provider's ``jwks_uri``) or a
local file. A token is accepted when its signature verifies with the key its header names
(``kid``; a set of one key needs none), with an asymmetric algorithm (RS*, PS*, ES*, EdDSA: never
``none`` or HMAC), and it carries an unexpired ``exp``, the configured ``iss``
(``STACUBE_OIDC_ISSUER``) and ``aud`` (``STACUBE_OIDC_AUDIENCE``) when those are set.

The caller's workspace is the claim ``STACUBE_OIDC_WORKSPACE_CLAIM`` (default ``stacube_workspace``; a dotted path
such as ``ext.workspace`` reads nested claims). Admin rights come from ``STACUBE_OIDC_ADMIN_CLAIM``
(default ``stacube_roles``): ``true``, the value ``STACUBE_OIDC_ADMIN_VALUE`` (default ``admin``),
a list holding it or a space-separated string holding it (``realm_access.roles`` style claims work).

Key sets are cached per process (:data:`JWKS_TTL` seconds) and fetched again, at most every
:data:`JWKS_MIN_REFRESH` seconds, when a token names a key the cached set lacks (key rotation).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stacube.access.errors import OidcUnavailable, Unauthorized
from stacube.access.policy import Principal

JWKS_TTL = 300.0
JWKS_MIN_REFRESH = 30.0
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: The JWK key type each algorithm family signs with.
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}

_CACHE: dict[str, tuple[float, object]] = {}
_LOCK = threading.Lock()


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts separated by dots (API keys have no dots)."""
    return token.count(".") == 2 and all(token.split("."))


def _read_jwks(source: str) -> dict:
    if source.startswith(("https://", "http://")):
        with urllib.request.urlopen(source, timeout=5) as response:  # noqa: S310 - configured URL
            return json.loads(response.read())
    path = Path(source[len("file://"):] if source.startswith("file://") else source)
    return json.loads(path.read_text())


def _jwt():
    try:
        import jwt
    except ImportError as exc:  # a deployment without the serve extra's PyJWT
        raise OidcUnavailable("bearer tokens cannot be verified here: PyJWT is not installed") from exc
    return jwt


def load_jwks(source: str, *, refresh: bool = False):
    """The key set at ``source`` (a ``jwt.PyJWKSet``), cached per process.

    Raises:
        Unauthorized: the key set cannot be read or parsed.
    """
    jwt = _jwt()

    now = time.monotonic()
    with _LOCK:
        hit = _CACHE.get(source)
    if hit and (now - hit[0] < JWKS_TTL) and not (refresh and now - hit[0] >= JWKS_MIN_REFRESH):
        return hit[1]
    try:
        keys = jwt.PyJWKSet.from_dict(_read_jwks(source))
    except Exception as exc:  # network, file or format errors: the token cannot be checked
        if hit:
            return hit[1]
        raise Unauthorized(f"bearer token cannot be verified: the key set is unavailable "
                           f"({type(exc).__name__})") from exc
    with _LOCK:
        _CACHE[source] = (now, keys)
    return keys


def clear_cache() -> None:
    """Forget the cached key sets (tests; a process normally keeps them for JWKS_TTL)."""
    with _LOCK:
        _CACHE.clear()


def claim(claims: dict, path: str):
    """The value at a dotted claim path, or None."""
    value = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _is_admin(value, wanted: str) -> bool:
    if value is True:
        return True
    if isinstance(value, str):
        return value == wanted or wanted in value.split()
    if isinstance(value, (list, tuple)):
        return wanted in value
    return False


@dataclass(frozen=True)
class OidcValidator:
    """Validates JWT bearer tokens against a JWKS; see the module docstring."""

    jwks: str
    issuer: str | None = None
    audience: str | None = None
    workspace_claim: str = "stacube_workspace"
    admin_claim: str = "stacube_roles"
    admin_value: str = "admin"
    leeway: float = 30.0

    @classmethod
    def from_settings(cls, settings) -> OidcValidator | None:
        """A validator when ``STACUBE_OIDC_JWKS`` is set, else None."""
        if not settings.oidc_jwks:
            return None
        return cls(settings.oidc_jwks, settings.oidc_issuer, settings.oidc_audience,
                   settings.oidc_workspace_claim, settings.oidc_admin_claim, settings.oidc_admin_value)

    def _key(self, token: str):
        jwt = _jwt()

        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthorized("malformed bearer token") from exc
        alg = header.get("alg")
        if alg not in ASYMMETRIC:
            raise Unauthorized(f"bearer token algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        for refresh in (False, True):
            keys = load_jwks(self.jwks, refresh=refresh).keys
            found = keys[0] if kid is None and len(keys) == 1 else next((k for k in keys if k.key_id == kid), None)
            if found is not None:
                if getattr(found, "key_type", None) != KEY_TYPES[alg[:2]]:
                    raise Unauthorized(f"bearer token algorithm {alg} does not fit its key "
                                       f"({getattr(found, 'key_type', '?')})")
                return found, alg
        raise Unauthorized("bearer token signed by an unknown key")

    def claims(self, token: str) -> dict:
        """The verified claims of ``token``.

        Raises:
            Unauthorized: bad signature, expired, wrong issuer or audience, unknown key.
        """
        jwt = _jwt()
        key, alg = self._key(token)
        options = {"require": ["exp"], "verify_aud": self.audience is not None}
        try:
            return jwt.decode(token, key.key, algorithms=[alg], audience=self.audience,
                              issuer=self.issuer, options=options, leeway=self.leeway)
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("bearer token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("bearer token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("bearer token is from another issuer") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid bearer token: {exc}") from exc
        except (ValueError, TypeError, KeyError) as exc:  # e.g. a key the algorithm cannot use
            raise Unauthorized(f"invalid bearer token: {type(exc).__name__}") from exc

    def principal(self, token: str) -> Principal:
        """The principal of a valid token (its workspace and admin claims).

        Raises:
            Unauthorized: see :meth:`claims`; a workspace claim that is not a string.
        """
        claims = self.claims(token)
        workspace = claim(claims, self.workspace_claim)
        if workspace is not None and not isinstance(workspace, str):
            raise Unauthorized(f"bearer token claim {self.workspace_claim!r} must be a string")
        admin = _is_admin(claim(claims, self.admin_claim), self.admin_value)
        subject = claims.get("sub")
        return Principal("admin" if admin else ("member" if workspace else "anonymous"), workspace or None,
                         str(subject) if subject is not None else None, "oidc")
