"""Single sign-on for the pages: the OpenID Connect Authorization Code flow with PKCE (S256), ``state``
and ``nonce``, against the hospital's identity provider (Keycloak and the like).

The provider's discovery document (``<issuer>/.well-known/openid-configuration``) names its endpoints; it
is cached for an hour (one that could not be read, for 30 seconds: the provider is not asked again
meanwhile), its key set (JWKS) for ten minutes (an unknown ``kid`` refetches it, at most every
10 seconds: the provider's key rotation). The flow's secrets (state, nonce, PKCE verifier) travel in a
short-lived cookie of the browser that started it; the ID token is verified here (signature by the
provider's JWKS with an asymmetric algorithm, issuer, audience, expiry, nonce); its username claim picks the
local account and its ``(iss, sub)`` pair is the one the account is bound to. No token or claim value is
ever logged or shown.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urlsplit

from inference.security import (
    IdTokenInvalid,
    SecurityError,
    Unauthenticated,
    jwk_keys,
    unverified_header,
    verify_id_token,
)

if TYPE_CHECKING:
    import httpx

    from inference.config import Settings

logger = logging.getLogger(__name__)

_DISCOVERY_SECONDS: Final = 3600.0
# A discovery document that could not be read is not asked for again this long: a burst of sign-ins
# while the provider is down costs it one request, not one each (negative caching).
_DISCOVERY_FAILED_SECONDS: Final = 30.0
_JWKS_SECONDS: Final = 600.0
_MIN_REFETCH_SECONDS: Final = 10.0
_TIMEOUT: Final = 10.0
# httpx's timeout bounds each read, not the answer: a provider trickling its answer a byte at a time
# would hold the request (and the reader's browser) for ever. The whole exchange has this long.
_DEADLINE: Final = 30.0
_MAX_BYTES: Final = 1 << 20
# Clocks of the provider and this server drift a little; more would widen a stolen token's window.
_LEEWAY_SECONDS: Final = 60
# Only asymmetric signatures: an HMAC-signed ID token would be signed with our own client secret, and
# ``none`` is no signature at all.
_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_KEY_TYPES: Final = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{32,128}")


class SsoRefused(Unauthenticated):
    """The single sign-on did not prove who the browser is: a stale or forged ``state``, an error from
    the provider, a code it refused, an ID token that does not verify (HTTP 401 on the pages)."""

    code = "sso_refused"


class SsoUnavailable(SecurityError):
    """The identity provider cannot be reached, or answers what is not OpenID Connect (HTTP 503)."""

    code = "sso_unavailable"


@dataclass(frozen=True, slots=True)
class SsoStart:
    """Where to send the browser, and the cookie value that must come back with it.

    Attributes:
        url: The provider's authorization URL with this flow's parameters.
        flow: ``state.nonce.verifier``, for the short-lived cookie of the flow.
    """

    url: str
    flow: str


@dataclass(frozen=True, slots=True)
class SsoIdentity:
    """Who the provider vouched for, from a verified ID token.

    Attributes:
        username: The username claim's value (names the local account).
        issuer: The token's ``iss`` (the configured provider).
        subject: Its ``sub``: the provider's stable, never reassigned identifier of the person.
        id_token: The ID token itself, kept with the session as the ``id_token_hint`` of a sign-out at
            the provider (never logged).
    """

    username: str
    issuer: str
    subject: str
    id_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    auth_methods: tuple[str, ...]
    algorithms: frozenset[str]
    end_session_endpoint: str | None


@dataclass
class _Keys:
    by_kid: dict[str, dict[str, Any]]
    anonymous: list[dict[str, Any]]
    fetched_at: float


_providers: dict[str, tuple[float, _Provider]] = {}
_failed: dict[str, tuple[float, SsoUnavailable]] = {}
# One discovery at a time per issuer: sign-ins arriving together wait for its answer (or its failure)
# rather than each asking the provider. A lock belongs to its event loop.
_discovering: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
_keys: dict[str, _Keys] = {}


def _check_url(url: object, what: str, *, issuer: str) -> str:
    if not isinstance(url, str):
        raise SsoUnavailable(f"The identity provider's discovery document has no {what}.")
    parts = urlsplit(url)
    # Plain http only beside an issuer that is plain http on the loopback itself (a test provider): an
    # https provider naming an http endpoint would have the code and the client secret cross in clear.
    plain = urlsplit(issuer).scheme == "http" and parts.scheme == "http" and parts.hostname in _LOOPBACK
    if parts.scheme == "https" or plain:
        return url
    raise SsoUnavailable(f"The identity provider's {what} is not an https URL.")


def _end_session(url: object, *, issuer: str) -> str | None:
    # Optional (RP-Initiated Logout 1.0): one that is not https is not used, and sign-out stays local.
    if url is None:
        return None
    try:
        checked = _check_url(url, "end-session endpoint", issuer=issuer)
    except SsoUnavailable:
        logger.warning("the identity provider's end-session endpoint is not used: not an https URL")
        return None
    if urlsplit(checked).fragment:  # the parameters would follow it, never sent to the provider
        logger.warning("the identity provider's end-session endpoint is not used: it has a fragment")
        return None
    return checked


def _verify(settings: Settings) -> ssl.SSLContext | bool:
    cafile = settings.ui.ui_oidc_cafile
    return ssl.create_default_context(cafile=str(cafile)) if cafile is not None else True


async def _read(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > _MAX_BYTES:
            raise ValueError("the answer is too large")
    return bytes(body)


async def _get_json(settings: Settings, url: str, what: str) -> dict[str, Any]:
    import httpx

    try:
        async with (
            asyncio.timeout(_DEADLINE),
            httpx.AsyncClient(verify=_verify(settings), timeout=_TIMEOUT) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            body = await _read(response)
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except (httpx.HTTPError, OSError, ValueError, RecursionError) as e:
        logger.error("the identity provider's %s could not be read", what, extra={"code": "sso_unavailable"})
        raise SsoUnavailable(f"The identity provider's {what} could not be read.") from e
    return document


async def _provider(settings: Settings) -> _Provider:
    issuer = str(settings.ui.ui_oidc_issuer)
    cached = _cached(issuer)
    if cached is not None:
        return cached
    loop = asyncio.get_running_loop()
    held = _discovering.get(issuer)
    if held is None or held[0] is not loop:
        held = _discovering[issuer] = (loop, asyncio.Lock())
    async with held[1]:
        cached = _cached(issuer)  # read (or found unreadable) while this sign-in waited
        if cached is not None:
            return cached
        try:
            provider = await _discover(settings, issuer)
        except SsoUnavailable as e:
            _failed[issuer] = (time.monotonic(), e)
            raise
        _failed.pop(issuer, None)
        _providers[issuer] = (time.monotonic(), provider)
        return provider


def _cached(issuer: str) -> _Provider | None:
    """The provider's cached discovery, or None when it is to be read (again).

    Raises:
        SsoUnavailable: It could not be read moments ago (negative caching).
    """
    cached = _providers.get(issuer)
    if cached is not None and time.monotonic() - cached[0] < _DISCOVERY_SECONDS:
        return cached[1]
    failed = _failed.get(issuer)
    if failed is not None and time.monotonic() - failed[0] < _DISCOVERY_FAILED_SECONDS:
        raise SsoUnavailable(failed[1].message)
    return None


async def _discover(settings: Settings, issuer: str) -> _Provider:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = await _get_json(settings, url, "discovery document")
    # OpenID Connect Discovery 4.3: the document must name exactly the issuer it was fetched for.
    if document.get("issuer") != issuer:
        logger.error("the identity provider's discovery document names another issuer")
        raise SsoUnavailable("The identity provider's discovery document names another issuer.")
    methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    algorithms = document.get("id_token_signing_alg_values_supported", ["RS256"])
    provider = _Provider(
        issuer=issuer,
        authorization_endpoint=_check_url(
            document.get("authorization_endpoint"), "authorization endpoint", issuer=issuer
        ),
        token_endpoint=_check_url(document.get("token_endpoint"), "token endpoint", issuer=issuer),
        jwks_uri=_check_url(document.get("jwks_uri"), "key set (jwks_uri)", issuer=issuer),
        auth_methods=tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else (),
        algorithms=frozenset(a for a in algorithms if a in _ALGORITHMS) if isinstance(algorithms, list)
        else frozenset(),
        end_session_endpoint=_end_session(document.get("end_session_endpoint"), issuer=issuer),
    )  # fmt: skip
    return provider


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


async def start(settings: Settings, *, redirect_uri: str) -> SsoStart:
    """A new flow: fresh state, nonce and PKCE verifier, and the provider's authorization URL.

    Raises:
        SsoUnavailable: The provider's discovery document cannot be read.
    """
    provider = await _provider(settings)
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    scopes = settings.ui.ui_oidc_scopes.split()
    params = {
        "response_type": "code",
        "client_id": str(settings.ui.ui_oidc_client_id),
        "redirect_uri": redirect_uri,
        "scope": " ".join(["openid", *(s for s in scopes if s != "openid")]),
        "state": state,
        "nonce": nonce,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if urlsplit(provider.authorization_endpoint).query else "?"
    return SsoStart(
        url=provider.authorization_endpoint + separator + urlencode(params),
        flow=f"{state}.{nonce}.{verifier}",
    )


def _refused(reason: str) -> SsoRefused:
    # The reason is a fixed word of ours (never a value from the request or the token).
    logger.warning(
        "a single sign-on was refused: %s", reason, extra={"code": "sso_refused", "reason": reason}
    )
    return SsoRefused("The single sign-on did not succeed.")


async def _exchange(
    settings: Settings, provider: _Provider, *, code: str, verifier: str, redirect_uri: str
) -> str:
    import httpx

    client_id = str(settings.ui.ui_oidc_client_id)
    secret = settings.ui.ui_oidc_client_secret
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    headers = {"Accept": "application/json"}
    if secret is None:
        form["client_id"] = client_id
    elif "client_secret_basic" in provider.auth_methods or "client_secret_post" not in provider.auth_methods:
        # RFC 6749 2.3.1: both halves form-urlencoded before they are joined.
        pair = f"{_form(client_id)}:{_form(secret.get_secret_value())}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    else:
        form["client_id"] = client_id
        form["client_secret"] = secret.get_secret_value()
    try:
        async with (
            asyncio.timeout(_DEADLINE),
            httpx.AsyncClient(verify=_verify(settings), timeout=_TIMEOUT) as client,
            client.stream("POST", provider.token_endpoint, data=form, headers=headers) as response,
        ):
            body = await _read(response)
            status = response.status_code
    except (httpx.HTTPError, OSError, ValueError) as e:
        logger.error(
            "the identity provider's token endpoint could not be reached", extra={"code": "sso_unavailable"}
        )
        raise SsoUnavailable("The identity provider's token endpoint could not be reached.") from e
    if status >= 500:
        logger.error(
            "the identity provider's token endpoint failed (HTTP %d)",
            status,
            extra={"code": "sso_unavailable"},
        )
        raise SsoUnavailable("The identity provider's token endpoint failed.")
    if status != 200:
        raise _refused(f"the provider refused the code (HTTP {status})")
    try:
        tokens = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise _refused("the token response is not JSON") from e
    id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
    if not isinstance(id_token, str):
        raise _refused("the token response has no ID token")
    return id_token


def _form(value: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(value)


async def _signing_keys(
    settings: Settings, provider: _Provider, *, kid: str | None, algorithm: str
) -> list[Any]:
    keys = _keys.get(provider.jwks_uri)
    now = time.monotonic()
    if (
        keys is None
        or now - keys.fetched_at > _JWKS_SECONDS
        or (kid is not None and kid not in keys.by_kid and now - keys.fetched_at > _MIN_REFETCH_SECONDS)
    ):
        document = await _get_json(settings, provider.jwks_uri, "key set (JWKS)")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise SsoUnavailable("The identity provider's key set (JWKS) has no keys.")
        keys = _Keys(by_kid={}, anonymous=[], fetched_at=now)
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            if isinstance(entry.get("kid"), str):
                keys.by_kid[entry["kid"]] = entry
            else:
                keys.anonymous.append(entry)
        _keys[provider.jwks_uri] = keys
    if kid is None:
        candidates = [*keys.by_kid.values(), *keys.anonymous]
    else:
        candidates = [keys.by_kid[kid]] if kid in keys.by_kid else keys.anonymous
    # The key's type must be the algorithm's: a symmetric (``oct``) key never verifies an ID token here.
    wanted = _KEY_TYPES.get(algorithm[:2])
    return jwk_keys(
        (e for e in candidates if e.get("kty") == wanted and e.get("alg", algorithm) == algorithm),
        algorithm=algorithm,
    )


async def _claims(settings: Settings, provider: _Provider, id_token: str, *, nonce: str) -> dict[str, Any]:
    try:
        header = unverified_header(id_token)
    except IdTokenInvalid as e:
        raise _refused(e.message) from e
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in provider.algorithms:
        raise _refused("the ID token's algorithm is not accepted")
    kid = header.get("kid")
    keys = await _signing_keys(
        settings, provider, kid=kid if isinstance(kid, str) else None, algorithm=algorithm
    )
    if not keys:
        raise _refused("the ID token was signed with a key the provider does not publish")
    client_id = str(settings.ui.ui_oidc_client_id)
    try:
        claims = verify_id_token(
            id_token, keys, algorithm=algorithm, audience=client_id, issuer=provider.issuer,
            leeway=_LEEWAY_SECONDS, required=("iss", "aud", "exp", "iat", "sub"),
        )  # fmt: skip
    except IdTokenInvalid as e:
        raise _refused(e.message) from e
    audience = claims["aud"]
    # OpenID Connect Core 3.1.3.7: with several audiences, the authorized party must be this client; an
    # authorized party named at all must be this client (a token another client obtained for us).
    several = isinstance(audience, list) and len(audience) > 1
    if (several or "azp" in claims) and claims.get("azp") != client_id:
        raise _refused("the ID token is meant for another party")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise _refused("the ID token's nonce is not this flow's")
    return claims


async def finish(
    settings: Settings, *, params: Mapping[str, str], flow: str, redirect_uri: str
) -> SsoIdentity:
    """Check the provider's answer to a flow and return who it vouches for.

    Args:
        settings: The pages' settings.
        params: The query parameters of the callback.
        flow: The flow cookie's value (``state.nonce.verifier``), empty when the browser sent none.
        redirect_uri: The callback URL, as sent at the start.

    Returns:
        The ID token's username claim, issuer and subject (not yet checked against the accounts).

    Raises:
        SsoRefused: A missing or different state, an error answer, a refused code, an ID token that does
            not verify, or one without a usable username claim or subject.
        SsoUnavailable: The provider cannot be reached.
    """
    parts = flow.split(".")
    if len(parts) != 3 or not all(_TOKEN.fullmatch(p) for p in parts):
        raise _refused("no flow was started in this browser (or it expired)")
    state, nonce, verifier = parts
    sent_state = params.get("state", "")
    if not hmac.compare_digest(sent_state.encode("utf-8", "replace"), state.encode()):
        raise _refused("the state is not this flow's")
    if "error" in params:
        raise _refused("the provider answered with an error")
    provider = await _provider(settings)
    # RFC 9207: an answer naming another issuer comes from another provider (mix-up attack).
    if "iss" in params and params["iss"] != provider.issuer:
        raise _refused("the answer names another issuer")
    code = params.get("code", "")
    if not 0 < len(code) <= 4096:
        raise _refused("the answer has no code")
    id_token = await _exchange(settings, provider, code=code, verifier=verifier, redirect_uri=redirect_uri)
    claims = await _claims(settings, provider, id_token, nonce=nonce)
    username = claims.get(settings.ui.ui_oidc_username_claim)
    if not isinstance(username, str) or not username:
        raise _refused("the ID token has no username claim")
    subject = claims["sub"]
    # OpenID Connect Core 2: at most 255 ASCII characters.
    if not isinstance(subject, str) or not 0 < len(subject) <= 255 or not subject.isascii():
        raise _refused("the ID token's subject is not usable")
    return SsoIdentity(username=username, issuer=provider.issuer, subject=subject, id_token=id_token)


async def end_session_url(settings: Settings, *, id_token: str, post_logout_redirect_uri: str) -> str | None:
    """Where to send the browser to sign out at the provider too (OpenID Connect RP-Initiated Logout 1.0):
    its ``end_session_endpoint`` with ``id_token_hint``, ``client_id`` and ``post_logout_redirect_uri``.

    Returns:
        The URL, or None when the provider names no end-session endpoint or cannot be read now (the
        sign-out then stays local: it never fails because of the provider).
    """
    try:
        provider = await _provider(settings)
    except SsoUnavailable:
        return None
    if provider.end_session_endpoint is None:
        return None
    params = {
        "id_token_hint": id_token,
        "client_id": str(settings.ui.ui_oidc_client_id),
        "post_logout_redirect_uri": post_logout_redirect_uri,
    }
    separator = "&" if urlsplit(provider.end_session_endpoint).query else "?"
    return provider.end_session_endpoint + separator + urlencode(params)
