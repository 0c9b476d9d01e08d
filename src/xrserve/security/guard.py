"""Who may call what: the check every protected route makes, as a FastAPI dependency.

401 when no valid key is presented, 403 when the key lacks the scope. With `--dev` on
a loopback address a request with no key is let through as `anonymous`, and so is one
whose bearer token is not shaped like an xrserve key (`api_key="EMPTY"`, the placeholder
vLLM's and Ollama's docs tell OpenAI clients to send, since those clients cannot send
none). A token shaped like a key (`xrs_...`) is always checked.

The key is checked before the body is read: `KeyFirstRoute` (the `route_class` of every
router with protected routes) runs the guard before FastAPI parses the body, which it
otherwise does before any dependency, so a stranger sending garbage would get 400, not 401.
Failed attempts with key-shaped tokens are counted per key id and client address
(`lockout.Lockouts`); a locked one gets 429. A refusal leaves the key id it claimed and why
in the ASGI scope, for the audit record.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any

from fastapi import Request, Response, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from xrserve.core.errors import Forbidden, TooManyRequests, Unauthorized
from xrserve.security.keys import ANONYMOUS, ApiKey, KeyRejected, KeyStore, claimed_key_id, looks_like_key
from xrserve.security.lockout import LockedOut, LockoutPolicy, Lockouts, SharedLockouts

bearer = HTTPBearer(auto_error=False, description="An API key from `xrserve keys create`: xrs_<id>_<secret>")

KEY_SCOPE = "xrserve.key_id"
MODEL_SCOPE = "xrserve.model"
NOTE_SCOPE = "xrserve.note"  # why a request was refused (or anything else worth a line in the audit)
IDENTIFIED_SCOPE = "xrserve.key"  # the ApiKey the request presented, once checked
#: a function of the ApiKey that the HTTP rate limiter (api/ratelimit.py) leaves in the scope: called once
#: the key is known, it takes one request from the key's bucket or raises the 429
ADMIT_SCOPE = "xrserve.admit"


class Guard:
    def __init__(
        self,
        keys: KeyStore,
        anonymous_allowed: bool,
        lockout: LockoutPolicy | None = None,
        shared_lockouts: SharedLockouts | None = None,
    ) -> None:
        self.keys = keys
        self.anonymous_allowed = anonymous_allowed
        self.lockouts = Lockouts(lockout or LockoutPolicy(), shared=shared_lockouts)

    def authorize(self, request: HTTPConnection, model: str | None = None, *, admin: bool = False) -> ApiKey:
        key = self.identify(request)
        request.scope[KEY_SCOPE] = key.id
        if model is not None:
            request.scope[MODEL_SCOPE] = model
        require_scope(key, model, admin=admin)
        return key

    def identify(self, request: HTTPConnection) -> ApiKey:
        """The request's key, checked once per request (later calls reuse the answer)."""
        key = request.scope.get(IDENTIFIED_SCOPE)
        if key is None:
            key = self.identify_header(request.headers.get("authorization"), request.scope)
        return key

    def identify_header(self, header: str | None, scope: MutableMapping[str, Any] | None = None) -> ApiKey:
        """The key an `Authorization` header value presents (None: no header).

        With the request's ASGI `scope`, the client address counts toward lockouts, and the
        key (or, when refused, the key id claimed and why) is left there for the audit.
        """
        notes: dict[str, Any] = {}
        try:
            key = self._identify(header, scope, notes)
        except (Unauthorized, TooManyRequests):
            if scope is not None:
                scope[KEY_SCOPE] = notes.get("key_id")
                scope[NOTE_SCOPE] = notes.get("note")
            raise
        if scope is not None:
            scope[IDENTIFIED_SCOPE] = key
            scope[KEY_SCOPE] = key.id
            if notes.get("note"):
                scope[NOTE_SCOPE] = notes["note"]
            admit = scope.get(ADMIT_SCOPE)
            if admit is not None:
                admit(key)
        return key

    def _identify(self, header: str | None, scope: MutableMapping[str, Any] | None, notes: dict[str, Any]) -> ApiKey:
        if not header:
            if self.anonymous_allowed:
                return ANONYMOUS
            notes["note"] = "no API key"
            raise Unauthorized(
                "this route needs an API key: send 'Authorization: Bearer xrs_...' "
                "(create one with `xrserve keys create --scope <model>`)"
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            notes["note"] = "not a Bearer token"
            raise Unauthorized("the Authorization header must be 'Bearer <API key>'")
        if self.anonymous_allowed and not looks_like_key(token):
            return ANONYMOUS  # a placeholder ("EMPTY", "sk-no-key-required"): clients that must send something
        if not token:
            notes["note"] = "not a Bearer token"
            raise Unauthorized("the Authorization header must be 'Bearer <API key>'")
        if not looks_like_key(token):  # can never be right, so it is no guess: refused, not counted
            notes["note"] = "not an xrserve key"
            raise Unauthorized("the API key is malformed; keys look like xrs_<id>_<secret>")
        key_id = notes["key_id"] = claimed_key_id(token)
        client = scope.get("client") if scope is not None else None
        address = client[0] if client else None
        try:
            self.lockouts.check(key_id, address)
        except LockedOut as exc:
            notes["note"] = f"locked out: {exc.subject} had too many failed attempts"
            raise
        try:
            key, notes["note"] = self.keys.authenticate(token)
        except KeyRejected as exc:
            self.lockouts.failed(key_id, address)
            notes["note"] = exc.reason
            raise Unauthorized(exc.message) from None
        self.lockouts.succeeded(key.id)
        return key


def require_scope(key: ApiKey, model: str | None, *, admin: bool = False) -> None:
    """403 unless the key covers the model (or admin work); shared by REST routes and session streams."""
    if not key.allows(model, admin=admin):
        need = "admin" if admin else f"'{model}' (or '*')"
        raise Forbidden(f"API key {key.id} lacks the scope {need}; its scopes are {list(key.scopes)}")


def guard_of(request: HTTPConnection) -> Guard:
    return request.app.state.guard


def _presents_key(dependant: Dependant) -> bool:
    return dependant.call is bearer or any(_presents_key(sub) for sub in dependant.dependencies)


class KeyFirstRoute(APIRoute):
    """A route that checks the key before FastAPI reads the body: 401 (or 429) comes before any 400.

    FastAPI parses a route's body (JSON, a form) before it solves any dependency, so a guard
    dependency alone answers a stranger's garbage with 400. Routes whose dependencies present
    the bearer scheme (every guard dependency does) get the check first; the dependency then
    reuses its answer. Give it to a router as `APIRouter(route_class=KeyFirstRoute)`.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not _presents_key(self.dependant):
            return handler

        async def key_first(request: Request) -> Response:
            guard_of(request).identify(request)
            return await handler(request)

        return key_first


Credentials = HTTPAuthorizationCredentials | None  # declared so /docs offers "Authorize"; the guard reads the header


async def require_key(request: Request, _: Credentials = Security(bearer)) -> ApiKey:
    """Any valid key (or anonymous in --dev)."""
    return guard_of(request).authorize(request)


async def require_admin(request: Request, _: Credentials = Security(bearer)) -> ApiKey:
    return guard_of(request).authorize(request, admin=True)


async def require_model_scope(request: Request, _: Credentials = Security(bearer)) -> ApiKey:
    """A key whose scopes cover the model named in the path."""
    return guard_of(request).authorize(request, request.path_params.get("model_name"))
