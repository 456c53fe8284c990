"""A small OpenID Connect provider for the console's sign-in tests (authorization code + PKCE).

It serves what the console and the APIs use of a real provider:

* ``GET /.well-known/openid-configuration`` - discovery;
* ``GET /jwks`` - the public key its tokens are signed with (RS256);
* ``GET /authorize`` - a sign-in page (a username field) for a registered client and redirect
  URI, ``response_type=code`` and an S256 ``code_challenge``; ``POST /authorize`` signs in a known
  user and redirects to ``redirect_uri?code=...&state=...``;
* ``POST /token`` - trades a code (once, within a minute) for an access token (``aud`` the
  configured audience, the user's claims) and an ID token, after checking the client, the
  redirect URI and the PKCE verifier (``BASE64URL(SHA256(code_verifier)) == code_challenge``).

Discovery, JWKS and token answers carry ``Access-Control-Allow-Origin: *`` (the console calls
them from the browser). Everything runs in a thread of the test process on a free port.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from stacube_testing import rsa_key


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636, section 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class LocalIssuer:
    """The provider. ``users``: ``{username: extra claims}``; ``client_id`` and ``redirect_uris``:
    the one registered (public) client; ``audience``: the ``aud`` of its access tokens."""

    def __init__(self, *, client_id: str, redirect_uris: list[str], audience: str, users: dict[str, dict]):
        import jwt

        self.client_id = client_id
        self.redirect_uris = redirect_uris
        self.audience = audience
        self.users = users
        self.key = rsa_key()
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "issuer-key", "use": "sig", "alg": "RS256"}]}
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalIssuer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sign(self, claims: dict, audience: str, lifetime: int = 600) -> str:
        import jwt

        now = int(time.time())
        doc = {"iss": self.url, "aud": audience, "iat": now, "exp": now + lifetime, **claims}
        return jwt.encode(doc, self.key, algorithm="RS256", headers={"kid": "issuer-key"})

    # -- the endpoints ---------------------------------------------------------------------------
    def discovery(self) -> dict:
        return {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"], "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["none"]}

    def check_authorize(self, q: dict) -> str | None:
        """Why an authorization request is refused, or None."""
        if q.get("client_id") != self.client_id:
            return "unknown client_id"
        if q.get("redirect_uri") not in self.redirect_uris:
            return "redirect_uri is not registered"
        if q.get("response_type") != "code":
            return "response_type must be code"
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return "PKCE with S256 is required"
        return None

    def grant(self, q: dict, username: str) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"user": username, "client_id": q["client_id"], "redirect_uri": q["redirect_uri"],
                            "challenge": q["code_challenge"], "expires": time.monotonic() + 60}
        return f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"

    def token(self, form: dict) -> tuple[int, dict]:
        self.token_requests.append(form)
        grant = self.codes.pop(form.get("code", ""), None)  # a code works once
        if form.get("grant_type") != "authorization_code" or grant is None or grant["expires"] < time.monotonic():
            return 400, {"error": "invalid_grant", "error_description": "unknown, used or expired code"}
        if form.get("client_id") != grant["client_id"] or form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "client or redirect_uri differ"}
        if pkce_challenge(form.get("code_verifier", "")) != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        user = grant["user"]
        claims = {"sub": f"user-{user}", "preferred_username": user, **self.users[user]}
        return 200, {"access_token": self.sign(claims, self.audience), "token_type": "Bearer", "expires_in": 600,
                     "id_token": self.sign({"sub": claims["sub"], "preferred_username": user}, self.client_id)}

    def _handler(self):
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, doc: dict):
                self._send(status, json.dumps(doc).encode(), "application/json",
                           {"Access-Control-Allow-Origin": "*"})

            def _query(self, text: str) -> dict:
                return {k: v[0] for k, v in parse_qs(text).items()}

            def do_OPTIONS(self):  # noqa: N802 - CORS preflight
                self._send(204, b"", "text/plain", {"Access-Control-Allow-Origin": "*",
                                                     "Access-Control-Allow-Methods": "GET, POST",
                                                     "Access-Control-Allow-Headers": "Content-Type, Accept"})

            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    return self._json(200, issuer.discovery())
                if url.path == "/jwks":
                    return self._json(200, issuer.jwks)
                if url.path == "/authorize":
                    q = self._query(url.query)
                    problem = issuer.check_authorize(q)
                    if problem:
                        return self._send(400, problem.encode(), "text/plain")
                    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                                     for k, v in q.items())
                    page = ('<!doctype html><html lang="en"><head><title>Test issuer</title></head><body>'
                            '<h1>Test issuer: sign in</h1><form method="post" action="/authorize">'
                            f'{hidden}<label for="username">Username</label> <input id="username" name="username">'
                            ' <button type="submit" id="issuer-submit">Sign in</button></form></body></html>')
                    return self._send(200, page.encode(), "text/html; charset=utf-8")
                self._send(404, b"not found", "text/plain")

            def do_POST(self):  # noqa: N802
                url = urlparse(self.path)
                form = self._query(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                if url.path == "/authorize":
                    problem = issuer.check_authorize(form)
                    if problem or form.get("username") not in issuer.users:
                        return self._send(400, (problem or "unknown user").encode(), "text/plain")
                    self.send_response(302)
                    self.send_header("Location", issuer.grant(form, form["username"]))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if url.path == "/token":
                    return self._json(*issuer.token(form))
                self._send(404, b"not found", "text/plain")

        return Handler
