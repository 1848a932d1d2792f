"""Who may call the AdminService: a bearer token from the environment, and/or mTLS.

Checked per call inside the admin servicer (not as a server interceptor), so
the Route hot path pays nothing for it.

- no `authorization` metadata, a malformed one, or a wrong token: UNAUTHENTICATED
  (the caller is not identified);
- the read-only token on a call that changes something, or a client
  certificate whose common name is not allowed: PERMISSION_DENIED (identified,
  but not allowed).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import grpc

from semroute.config import AdminTlsSpec

MIN_TOKEN_CHARS = 16


class AdminAuth:
    def __init__(
        self,
        token: str | None,
        read_token: str | None = None,
        *,
        token_env: str = "SEMROUTE_ADMIN_TOKEN",
        allowed_common_names: tuple[str, ...] = (),
    ) -> None:
        for name, value in (("admin token", token), ("read-only admin token", read_token)):
            if value is not None and len(value) < MIN_TOKEN_CHARS:
                raise ValueError(f"the {name} must be at least {MIN_TOKEN_CHARS} characters")
        self._token = _digest(token.encode()) if token else None
        self._read_token = _digest(read_token.encode()) if read_token else None
        self._token_env = token_env
        self._allowed = frozenset(allowed_common_names)

    @property
    def uses_token(self) -> bool:
        return self._token is not None or self._read_token is not None

    async def check(self, context: grpc.aio.ServicerContext, *, write: bool) -> None:
        """Abort the call unless the caller may make it (`write`: it changes something)."""
        if self._allowed:
            names = {c.decode() for c in context.auth_context().get("x509_common_name", [])}
            if not names & self._allowed:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client certificate {sorted(names) or 'none'} is not allowed to administer",
                )
        if not self.uses_token:
            return
        value = ""
        for key, v in context.invocation_metadata() or ():
            if key == "authorization":
                value = v if isinstance(v, str) else v.decode(errors="replace")
        if not value:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"admin calls need 'authorization: Bearer <token>' metadata "
                f"(the token in ${self._token_env} of the server)",
            )
        scheme, _, given = value.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "malformed authorization; use 'Bearer <token>'"
            )
        cred = _digest(given.strip().encode())
        # Both tokens are always compared, in constant time, on digests of one length:
        # neither the time taken nor an early exit tells a caller how close a guess was.
        full = self._token is not None and hmac.compare_digest(cred, self._token)
        read = self._read_token is not None and hmac.compare_digest(cred, self._read_token)
        if full:
            return
        if read:
            if write:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "the read-only admin token may only call GetStatus and ListIndexes",
                )
            return
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "admin token rejected")


def _digest(token: bytes) -> bytes:
    """Fixed-length form of a token, so comparing it reveals nothing about its length."""
    return hashlib.sha256(token).digest()


def server_credentials(tls: AdminTlsSpec, base: Path | None) -> grpc.ServerCredentials:
    """mTLS: the server's certificate, and client certificates required and checked
    against the client CA."""

    def read(p: Path) -> bytes:
        path = p if p.is_absolute() or base is None else base / p
        return path.read_bytes()

    return grpc.ssl_server_credentials(
        [(read(tls.key_file), read(tls.cert_file))],
        root_certificates=read(tls.client_ca_file),
        require_client_auth=True,
    )
