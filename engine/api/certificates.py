"""The core's TLS material as gRPC asks for it at every new handshake, so a reload
(SIGHUP) changes the certificate, key or client CA for the next connection without
closing the open ones (grpc.dynamic_ssl_server_credentials)."""
from __future__ import annotations

import threading

import grpc

from engine.api.security import TlsSettings


def _certificate_configuration(tls: TlsSettings) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(tls.private_key, tls.cert_chain)],
                                                     root_certificates=tls.client_ca)


class ServerCertificates:
    """The core's certificate, key and client CA as gRPC fetches them at each new TLS
    handshake: a replacement serves the next connection, open ones keep theirs. Whether
    client certificates are required is fixed when the port opens."""

    def __init__(self, tls: TlsSettings) -> None:
        self.current = tls
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._lock = threading.Lock()  # the fetcher runs on gRPC's threads

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            _certificate_configuration(self.current), self._fetch,
            require_client_authentication=self.current.require_client_cert)

    def replace(self, tls: TlsSettings) -> bool:
        """Serve `tls` from the next handshake on; False when it is what is served."""
        if tls == self.current:
            return False
        with self._lock:
            self._pending = _certificate_configuration(tls)
            self.current = tls
        return True

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question at a handshake: a new configuration, or None for no change."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending
