"""How a client reaches the jobdock server and proves who it is: the URL,
an API token, the CA it trusts, and a client certificate (mutual TLS); given,
or read as the CLI reads them (JOBDOCK_URL, _TOKEN, _CA, _CERT, _KEY or the
JOBDOCK_CONFIG file)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from jobdock.client_config import read_client_config

#: The user agent of jobdock's clients (the library and the CLI).
USER_AGENT = "jobdock-client"


@dataclass(frozen=True, slots=True)
class Credentials:
    """How a client proves who it is, and whom it trusts: an API token, a CA
    for the server's certificate, a client certificate and key (mutual TLS)."""

    token: str | None = None
    ca: Path | str | None = None
    cert: Path | str | None = None
    key: Path | str | None = None

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def verify(self, url: str | None = None) -> ssl.SSLContext | bool:
        """What httpx checks the server at ``url`` with: the system's CAs, or
        ``ca``; nothing for a plain ``http://`` server, whose connections
        carry no TLS (building a context loads every system CA, a third of
        a short command's run)."""
        if url is not None and url.lower().startswith("http://"):
            return False
        if self.ca is None and self.cert is None:
            return True
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return context


def from_environment(url: str | None, credentials: Credentials | None) -> tuple[str, Credentials]:
    """The server and credentials given, else those the CLI would use (env
    JOBDOCK_URL, _TOKEN, _CA, _CERT, _KEY or the JOBDOCK_CONFIG file)."""
    if url is not None and credentials is not None:
        return url, credentials
    config = read_client_config(url=url)
    if credentials is None:
        credentials = Credentials(
            token=config.token, ca=config.ca, cert=config.cert, key=config.key
        )
    return config.url, credentials
