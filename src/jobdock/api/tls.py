"""HTTPS for ``jobdock serve``: the server's TLS context, and the client
certificate handed to the app.

uvicorn verifies client certificates but does not tell the application
which one a connection presented (the ASGI ``tls`` extension is not
implemented there: uvicorn issues #400, #745, PRs #1119, #3133). So the
server uses :class:`TlsHttpProtocol`, uvicorn's httptools protocol that adds
the extension to each request's scope as the ASGI TLS spec describes it, with
the verified leaf certificate in ``client_cert_chain``. It is read once per
connection, when the connection's first request begins (the handshake, and
so verification, is complete by then). ``api/auth.py`` reads the name from
there, and only from there: no header can set it.
"""

from __future__ import annotations

import ssl
from typing import Any

from jobdock.api.limits import HeaderDeadline
from jobdock.settings import Settings

#: The versions ``tls_min_version`` may name; older ones are always refused.
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def server_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of a server configured with tls_cert/tls_key (and
    tls_ca: client certificates from that CA are verified and asked for;
    a request without one is refused by the app, with a 401). Versions
    below ``tls_min_version`` (by default 1.3) fail the handshake."""
    assert settings.tls_cert is not None and settings.tls_key is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[settings.tls_min_version]
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_ca is not None:
        context.load_verify_locations(cafile=settings.tls_ca)
        # OPTIONAL, not REQUIRED: a certificate that is sent is verified
        # (another CA's, or an expired one, fails the handshake), but a
        # client without one still gets a clear 401, or may use a token.
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


class TlsHttpProtocol(HeaderDeadline):
    """uvicorn's httptools protocol (with the deadline on request heads of
    api/limits.py), adding the ASGI ``tls`` extension."""

    _tls: dict[str, Any] | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        ssl_object = self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        if self._tls is None:
            self._tls = _tls_extension(ssl_object)
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        scope.setdefault("extensions", {}).setdefault("tls", self._tls)


def _tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": ssl_object.version(),
        "cipher_suite": cipher[0] if cipher else None,
    }
