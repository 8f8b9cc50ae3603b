"""A real OpenID Connect provider on loopback for the pages' single sign-on tests.

The protocol is IdentityPython's ``idpyoidc.server`` (an OpenID-certified provider implementation): its
own discovery document, authorization endpoint (PKCE S256 required), token endpoint (client
authentication, one use per code), ID tokens signed with its own RSA key, and its JWKS. This module only
carries HTTP to it (Starlette under uvicorn, like the other loopback servers of the suite) and lets a test
choose who the provider says signed in (``provider.sign_in_as``): the provider approves every authorization
request as that user, which is what a hospital's identity provider does once its own login page passed
(``provider.consent``: after a page of its own with an "Approve" link, for a browser). With a
``post_logout_redirect_uri`` it also has an end-session endpoint (RP-Initiated Logout), which verifies the
``id_token_hint`` and the registered return address before it sends the browser back
(``provider.signed_out``: whom it signed out). ``provider.down`` makes its discovery document answer 503,
as a provider in an outage does (``provider.discovery_requests`` counts the requests it got).

A test can also make the provider misbehave in the one way a correct provider never would, to prove the
pages notice: ``provider.tamper_id_token`` re-signs the next ID tokens, with the provider's own key, with
some claims replaced (another audience, say); ``provider.foreign_key`` signs them with a key it does not
publish.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from _loopback import live_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "dxassist-pages"
CLIENT_SECRET = "a-long-client-secret-for-the-tests"
OTHER_CLIENT_ID = "another-application"
OTHER_CLIENT_SECRET = "another-long-client-secret-for-tests"

_KEY_DEFS = [{"type": "RSA", "key": "", "use": ["sig"]}]
_CRYPT = {
    "kwargs": {
        "keys": {
            "key_defs": [
                {"type": "OCT", "use": ["enc"], "kid": "password"},
                {"type": "OCT", "use": ["enc"], "kid": "salt"},
            ]
        },
        "iterations": 1,
    }
}


def _configuration(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "httpc_params": {"verify": False},
        "keys": {"uri_path": "jwks", "key_defs": _KEY_DEFS},
        "token_handler_args": {
            "code": {"lifetime": 600, "kwargs": {"crypt_conf": _CRYPT}},
            "token": {"lifetime": 3600, "kwargs": {"crypt_conf": _CRYPT}},
            "id_token": {
                "class": "idpyoidc.server.token.id_token.IDToken",
                "kwargs": {
                    "base_claims": {"preferred_username": None, "name": None},
                    "add_claims_by_scope": True,
                },
            },
        },
        "endpoint": {
            "provider_config": {
                "path": ".well-known/openid-configuration",
                "class": "idpyoidc.server.oidc.provider_config.ProviderConfiguration",
                "kwargs": {},
            },
            "authorization": {
                "path": "authorization",
                "class": "idpyoidc.server.oidc.authorization.Authorization",
                "kwargs": {"response_types_supported": ["code"], "response_modes_supported": ["query"]},
            },
            "token": {
                "path": "token",
                "class": "idpyoidc.server.oidc.token.Token",
                "kwargs": {"client_authn_method": ["client_secret_basic", "client_secret_post"]},
            },
        },
        "add_on": {
            "pkce": {
                "function": "idpyoidc.server.oauth2.add_on.pkce.add_support",
                "kwargs": {"essential": True, "code_challenge_method": "S256"},
            }
        },
        "authentication": {
            "auto": {
                "acr": "urn:oasis:names:tc:SAML:2.0:ac:classes:InternetProtocolPassword",
                "class": "idpyoidc.server.user_authn.user.NoAuthn",
                "kwargs": {"user": "nobody"},
            }
        },
        "userinfo": {"class": "idpyoidc.server.user_info.UserInfo", "kwargs": {"db": {}}},
        "authz": {
            "class": "idpyoidc.server.authz.AuthzHandling",
            "kwargs": {
                "grant_config": {
                    "usage_rules": {
                        "authorization_code": {
                            "supports_minting": ["access_token", "id_token"],
                            "max_usage": 1,
                        },
                        "access_token": {},
                    },
                    "expires_in": 3600,
                }
            },
        },
        "session_params": {"encrypter": _CRYPT},
        "template_dir": "templates",
    }


@dataclass
class Provider:
    """The running provider: its issuer URL, the user it signs in, and what it answered."""

    issuer: str
    server: Any
    user: str = "nobody"
    tamper_id_token: dict[str, Any] = field(default_factory=dict)
    foreign_key: bool = False
    consent: bool = False
    token_requests: int = 0
    end_session: bool = False
    signed_out: list[dict[str, str]] = field(default_factory=list)
    down: bool = False
    discovery_requests: int = 0
    end_session_suffix: str = ""

    def sign_in_as(self, username: str, *, name: str = "Dr Test", person: str | None = None) -> None:
        """The next authorization requests are approved as ``username`` (its ``preferred_username`` too).

        ``person``: the provider's own user behind that username (default: the username itself); another
        person under the same ``preferred_username`` (a username recycled or renamed at the provider) gets
        ID tokens with another ``sub``.
        """
        uid = person if person is not None else username
        self.server.context.userinfo.db[uid] = {"preferred_username": username, "name": name}
        self.user = uid
        self.server.context.authn_broker.get_method_by_id("auto").user = uid

    def subject_of(self, person: str) -> str:
        """The ``sub`` the provider's ID tokens carry for its user ``person``."""
        manager = self.server.context.session_manager
        return str(manager.sub_func["public"](person, salt=manager.get_salt(), sector_identifier=""))

    def register(
        self, client_id: str, secret: str, redirect_uri: str, *, post_logout_redirect_uri: str | None = None
    ) -> None:
        """Register a confidential client of this provider (as its administrator would), with the page its
        RP-initiated logouts may return to."""
        self.server.context.cdb[client_id] = {
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uris": [(redirect_uri, {})],
            "post_logout_redirect_uris": [post_logout_redirect_uri] if post_logout_redirect_uri else [],
            "response_types_supported": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "allowed_scopes": ["openid", "profile", "email"],
            "client_salt": "salt",
        }


def _http_info(request: Request) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in ("cookie",)}
    return {"headers": headers, "method": request.method, "url": str(request.url), "cookie": []}


def _error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _app(state: dict[str, Provider]) -> Starlette:
    def provider() -> Provider:
        return state["provider"]

    async def discovery(request: Request) -> Response:
        provider().discovery_requests += 1
        if provider().down:  # an outage behind the provider's load balancer
            return PlainTextResponse("Service Unavailable", status_code=503)
        endpoint = provider().server.get_endpoint("provider_config")
        args = endpoint.process_request(None)
        info = endpoint.do_response(**args)
        if not provider().end_session:
            return Response(info["response"], media_type="application/json")
        document = json.loads(info["response"])
        document["end_session_endpoint"] = provider().issuer + "/end_session" + provider().end_session_suffix
        return JSONResponse(document)

    async def end_session(request: Request) -> Response:
        """OpenID Connect RP-Initiated Logout 1.0 at its strictest: the hint must be an ID token this
        provider signed for the client, and the return address one that client registered."""
        from cryptojwt.jws.jws import factory

        current = provider()
        params = dict(request.query_params)
        hint = params.get("id_token_hint", "")
        signed = factory(hint)
        if signed is None:
            return PlainTextResponse("id_token_hint is not a JWS", status_code=400)
        keys = current.server.context.keyjar.get_signing_key("RSA", issuer_id="")
        try:
            claims = signed.verify_compact(hint, keys)
        except Exception as e:  # cryptojwt raises several kinds on a bad signature
            return PlainTextResponse(f"id_token_hint does not verify: {e}", status_code=400)
        client_id = params.get("client_id", "")
        client = current.server.context.cdb.get(client_id, {})
        if claims.get("iss") != current.issuer or claims.get("aud") not in (client_id, [client_id]):
            return PlainTextResponse("id_token_hint is not this client's", status_code=400)
        back = params.get("post_logout_redirect_uri", "")
        if back not in client.get("post_logout_redirect_uris", []):
            return PlainTextResponse("post_logout_redirect_uri is not registered", status_code=400)
        current.signed_out.append({"sub": claims["sub"], "client_id": client_id, "uri": back})
        return RedirectResponse(back, status_code=302)

    async def jwks(request: Request) -> Response:
        keyjar = provider().server.context.keyjar
        return JSONResponse(keyjar.export_jwks(issuer_id=""))

    async def authorization(request: Request) -> Response:
        if provider().consent:  # the provider's own page first, as a real login or consent page is
            link = html.escape(f"/approve?{request.url.query}")
            return HTMLResponse(f'<!DOCTYPE html><title>Consent</title><a href="{link}">Approve</a>')
        return await approve(request)

    async def approve(request: Request) -> Response:
        endpoint = provider().server.get_endpoint("authorization")
        http_info = _http_info(request)
        parsed = endpoint.parse_request(dict(request.query_params), http_info=http_info)
        if "error" in parsed:
            return PlainTextResponse(json.dumps(parsed.to_dict()), status_code=400)
        args = endpoint.process_request(parsed, http_info=http_info)
        if "error" in args or "response_args" not in args and "redirect_location" not in args:
            return PlainTextResponse(json.dumps(args.get("response_args", {}) or str(args)), status_code=400)
        if "redirect_location" in args:
            return RedirectResponse(args["redirect_location"], status_code=302)
        info = endpoint.do_response(request=parsed, **args)
        return RedirectResponse(info["response"], status_code=302)

    async def token(request: Request) -> Response:
        current = provider()
        current.token_requests += 1
        endpoint = current.server.get_endpoint("token")
        http_info = _http_info(request)
        body = (await request.body()).decode()
        try:
            parsed = endpoint.parse_request(body, http_info=http_info)
        except Exception as e:  # the provider raises on bad client authentication
            return _error(401, "invalid_client", str(e))
        if "error" in parsed:
            return JSONResponse(parsed.to_dict(), status_code=400)
        args = endpoint.process_request(parsed, http_info=http_info)
        if "error" in args:
            return JSONResponse(dict(args), status_code=400)
        info = endpoint.do_response(request=parsed, **args)
        tokens = json.loads(info["response"])
        if "error" in tokens:
            return JSONResponse(tokens, status_code=400)
        if (current.tamper_id_token or current.foreign_key) and "id_token" in tokens:
            tokens["id_token"] = _resign(current, tokens["id_token"])
        return JSONResponse(tokens, headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/authorization", authorization),
            Route("/approve", approve),
            Route("/token", token, methods=["POST"]),
            Route("/end_session", end_session),
        ]
    )


def _resign(provider: Provider, id_token: str) -> str:
    """``id_token`` with the claims of ``provider.tamper_id_token`` replaced, signed again with the
    provider's own key (same algorithm and ``kid``)."""
    from cryptojwt.jws.jws import JWS, factory

    signed = factory(id_token)
    header = signed.jwt.headers
    claims = {**signed.jwt.payload(), **provider.tamper_id_token}
    if provider.foreign_key:  # a key the provider does not publish, under the ``kid`` of one it does
        from cryptojwt.jwk.rsa import new_rsa_key

        keys = [new_rsa_key(kid=header["kid"])]
    else:
        keys = provider.server.context.keyjar.get_signing_key("RSA", issuer_id="", kid=header["kid"])
    return str(JWS(json.dumps(claims), alg=header["alg"]).sign_compact(keys))


@contextmanager
def oidc_provider(
    redirect_uri: str, *, host: str = "127.0.0.1", post_logout_redirect_uri: str | None = None
) -> Iterator[Provider]:
    """Start the provider on a free loopback port with our client (``CLIENT_ID``) and another one
    registered, both redirecting to ``redirect_uri``; ``host`` names the loopback in its issuer URL
    (``localhost``: another site than ``127.0.0.1`` for a browser's SameSite rules).

    ``post_logout_redirect_uri``: the provider has an end-session endpoint (RP-Initiated Logout, named in
    its discovery document) and our client registered this page to come back to after it.
    """
    from idpyoidc.server import Server
    from idpyoidc.server.configure import OPConfiguration

    state: dict[str, Provider] = {}
    with tempfile.TemporaryDirectory() as home, live_server(_app(state)) as loopback:
        base = loopback.replace("127.0.0.1", host)
        conf = OPConfiguration(conf=_configuration(base), base_path=home)
        server = Server(conf, cwd=home)
        provider = Provider(issuer=base, server=server)
        provider.end_session = post_logout_redirect_uri is not None
        provider.register(
            CLIENT_ID, CLIENT_SECRET, redirect_uri, post_logout_redirect_uri=post_logout_redirect_uri
        )
        provider.register(OTHER_CLIENT_ID, OTHER_CLIENT_SECRET, redirect_uri)
        state["provider"] = provider
        yield provider


def basic(client_id: str, secret: str) -> str:
    """An HTTP Basic authorization header value."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def query(url: str) -> dict[str, str]:
    """The query parameters of a URL, one value each."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
