"""TLS on the serving port, with optional mutual TLS and certificate reload without a restart.

gRPC asks `CertificateReloader.fetch` for a new certificate configuration
before each new connection's handshake. It re-reads the files (a few small
reads) and, when they changed and form a valid pair, hands gRPC the new
configuration; connections already open keep theirs. A half-replaced pair
(new certificate, old key) or an unreadable file keeps the current
configuration and logs once per change, so a renewal in progress never breaks
the port.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
from pathlib import Path

import grpc

from semroute.config import ServerTlsSpec

log = logging.getLogger("semroute.tls")


class CertificateReloader:
    def __init__(self, spec: ServerTlsSpec, base: Path | None) -> None:
        def path(p: Path) -> Path:
            return p if p.is_absolute() or base is None else base / p

        self.cert_file = path(spec.cert_file)
        self.key_file = path(spec.key_file)
        self.ca_file = path(spec.client_ca_file) if spec.client_ca_file else None
        self.reloads = 0
        self._current = self._read()
        if self._current is None:
            raise ValueError(f"server.tls: cannot read {self.cert_file} / {self.key_file}")
        try:
            check_pair(self._current[0], self._current[1])
        except (ssl.SSLError, OSError, ValueError) as e:  # refuse to start on a bad pair
            raise ValueError(
                f"server.tls: {self.cert_file} and {self.key_file} do not form a pair: {e}"
            ) from None
        self._rejected: tuple[bytes, ...] | None = None

    @property
    def mutual(self) -> bool:
        return self.ca_file is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._current),
            self.fetch,
            require_client_authentication=self.mutual,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: the new configuration, or None (no change)."""
        files = self._read()
        if files is None or files == self._current or files == self._rejected:
            return None
        try:
            check_pair(files[0], files[1])
        except (ssl.SSLError, OSError, ValueError) as e:
            self._rejected = files
            log.warning("TLS files changed but do not form a valid pair; kept the current ones",
                        extra={"fields": {"error": str(e)}})  # fmt: skip
            return None
        self._current = files
        self.reloads += 1
        log.info("TLS certificate reloaded", extra={"fields": {"reloads": self.reloads}})
        return self._configuration(files)

    def _read(self) -> tuple[bytes, bytes, bytes | None] | None:
        try:
            ca = self.ca_file.read_bytes() if self.ca_file is not None else None
            return self.cert_file.read_bytes(), self.key_file.read_bytes(), ca
        except OSError:
            return None

    @staticmethod
    def _configuration(
        files: tuple[bytes, bytes, bytes | None],
    ) -> grpc.ServerCertificateConfiguration:
        cert, key, ca = files
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def check_pair(cert: bytes, key: bytes) -> None:
    """Raise unless `key` is the private key of `cert` (both PEM)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as d:
        c, k = Path(d) / "cert.pem", Path(d) / "key.pem"
        c.write_bytes(cert)
        k.write_bytes(key)
        ctx.load_cert_chain(c, k)
