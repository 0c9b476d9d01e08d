"""Who may call what: the check every protected route makes, as a FastAPI dependency.

401 when no valid key is presented, 403 when the key lacks the scope. With `--dev` on
a loopback address a request with no key is let through as `anonymous`, and so is one
whose bearer token is not shaped like an xrserve key (`api_key="EMPTY"`, the placeholder
vLLM's and Ollama's docs tell OpenAI clients to send, since those clients cannot send
none). A token shaped like a key (`xrs_...`) is always checked.
"""

from __future__ import annotations

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from xrserve.core.errors import Forbidden, Unauthorized
from xrserve.security.keys import ANONYMOUS, ApiKey, KeyStore, looks_like_key

bearer = HTTPBearer(auto_error=False, description="An API key from `xrserve keys create`: xrs_<id>_<secret>")

KEY_SCOPE = "xrserve.key_id"
MODEL_SCOPE = "xrserve.model"


class Guard:
    def __init__(self, keys: KeyStore, anonymous_allowed: bool) -> None:
        self.keys = keys
        self.anonymous_allowed = anonymous_allowed

    def authorize(self, request: Request, model: str | None = None, *, admin: bool = False) -> ApiKey:
        key = self.identify(request)
        request.scope[KEY_SCOPE] = key.id
        if model is not None:
            request.scope[MODEL_SCOPE] = model
        require_scope(key, model, admin=admin)
        return key

    def identify(self, request: Request) -> ApiKey:
        return self.identify_header(request.headers.get("authorization"))

    def identify_header(self, header: str | None) -> ApiKey:
        """The key an `Authorization` header value presents (None: no header)."""
        if not header:
            if self.anonymous_allowed:
                return ANONYMOUS
            raise Unauthorized(
                "this route needs an API key: send 'Authorization: Bearer xrs_...' "
                "(create one with `xrserve keys create --scope <model>`)"
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            raise Unauthorized("the Authorization header must be 'Bearer <API key>'")
        if self.anonymous_allowed and not looks_like_key(token):
            return ANONYMOUS  # a placeholder ("EMPTY", "sk-no-key-required"): clients that must send something
        if not token:
            raise Unauthorized("the Authorization header must be 'Bearer <API key>'")
        try:
            return self.keys.verify(token)
        except PermissionError as exc:
            raise Unauthorized(str(exc)) from None


def require_scope(key: ApiKey, model: str | None, *, admin: bool = False) -> None:
    """403 unless the key covers the model (or admin work); shared by REST routes and session streams."""
    if not key.allows(model, admin=admin):
        need = "admin" if admin else f"'{model}' (or '*')"
        raise Forbidden(f"API key {key.id} lacks the scope {need}; its scopes are {list(key.scopes)}")


def guard_of(request: Request) -> Guard:
    return request.app.state.guard


Credentials = HTTPAuthorizationCredentials | None  # declared so /docs offers "Authorize"; the guard reads the header


async def require_key(request: Request, _: Credentials = Security(bearer)) -> ApiKey:
    """Any valid key (or anonymous in --dev)."""
    return guard_of(request).authorize(request)


async def require_admin(request: Request, _: Credentials = Security(bearer)) -> ApiKey:
    return guard_of(request).authorize(request, admin=True)


async def require_model_scope(request: Request, _: Credentials = Security(bearer)) -> ApiKey:
    """A key whose scopes cover the model named in the path."""
    return guard_of(request).authorize(request, request.path_params.get("model_name"))
