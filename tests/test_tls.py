"""TLS on the serving port: server TLS, mutual TLS, certificate reload without a restart,
and the production switches that turn reflection and the admin service off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from semroute.config import Config, ServerTlsSpec
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import admin_pb2_grpc, router_pb2_grpc
from semroute.v1 import router_pb2 as pb

from .test_admin_support import AUTH, Bundles, bundles, running_app
from .tls_certs import Authority, Pem, write

__all__ = ["bundles"]

PROMPT = pb.RouteRequest(prompt="what are your opening hours?")


def _with_server(config: Config, **changes: Any) -> Config:
    return config.model_copy(update={"server": config.server.model_copy(update=changes)})


async def _route(target: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """A Route call on a new connection: OK, or the status it failed with."""
    channel = (
        grpc.aio.secure_channel(target, creds)
        if creds is not None
        else grpc.aio.insecure_channel(target)
    )
    async with channel as ch:
        try:
            d = await router_pb2_grpc.RouterServiceStub(ch).Route(PROMPT, timeout=10)
        except grpc.aio.AioRpcError as e:
            return e.code()
    assert d.model
    return grpc.StatusCode.OK


def _trusting(ca: Authority, client: Pem | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.pem)
    return grpc.ssl_channel_credentials(
        root_certificates=ca.pem, private_key=client.key, certificate_chain=client.cert
    )


async def test_tls_and_certificate_reload_without_restart(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    ca1, ca2 = Authority("ca-one"), Authority("ca-two")
    cert, key = write(ca1.issue("semroute", server=True), tmp_path, "server")
    cfg = _with_server(config, tls=ServerTlsSpec(cert_file=cert, key_file=key))
    async with running_app(cfg, encoder, bundles.a) as (app, target):
        assert app.tls is not None and not app.tls.mutual
        assert await _route(target, _trusting(ca1)) == grpc.StatusCode.OK
        assert await _route(target, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
        assert await _route(target, _trusting(ca2)) == grpc.StatusCode.UNAVAILABLE

        # Renewal: a certificate from another CA replaces the files; new connections
        # get it, without a restart.
        renewed = ca2.issue("semroute", server=True)
        write(renewed, tmp_path, "server")
        assert await _route(target, _trusting(ca2)) == grpc.StatusCode.OK
        assert await _route(target, _trusting(ca1)) == grpc.StatusCode.UNAVAILABLE
        assert app.tls.reloads == 1

        # A half-done renewal (new certificate, old key) is not taken: the port keeps
        # serving the last good pair.
        cert.write_bytes(ca1.issue("semroute", server=True).cert)
        assert await _route(target, _trusting(ca2)) == grpc.StatusCode.OK
        assert await _route(target, _trusting(ca2)) == grpc.StatusCode.OK
        assert app.tls.reloads == 1


async def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(
    config: Config, encoder: Any, bundles: Bundles, tmp_path: Path
) -> None:
    server_ca, client_ca, other_ca = Authority("srv"), Authority("clients"), Authority("other")
    cert, key = write(server_ca.issue("semroute", server=True), tmp_path, "server")
    ca_file = tmp_path / "clients-ca.crt"
    ca_file.write_bytes(client_ca.pem)
    tls = ServerTlsSpec(cert_file=cert, key_file=key, client_ca_file=ca_file)
    async with running_app(_with_server(config, tls=tls), encoder, bundles.a) as (app, target):
        assert app.tls is not None and app.tls.mutual
        good = client_ca.issue("gateway", server=False)
        stranger = other_ca.issue("gateway", server=False)
        assert await _route(target, _trusting(server_ca, good)) == grpc.StatusCode.OK
        assert await _route(target, _trusting(server_ca)) == grpc.StatusCode.UNAVAILABLE
        assert await _route(target, _trusting(server_ca, stranger)) == grpc.StatusCode.UNAVAILABLE


def test_a_bad_initial_pair_refuses_to_start(tmp_path: Path) -> None:
    from semroute.server.tls import CertificateReloader

    ca = Authority("ca")
    cert, _ = write(ca.issue("a", server=True), tmp_path, "a")
    _, other_key = write(ca.issue("b", server=True), tmp_path, "b")
    with pytest.raises(ValueError, match="do not form a pair"):
        CertificateReloader(ServerTlsSpec(cert_file=cert, key_file=other_key), None)


async def _reflection_services(target: str) -> list[str] | grpc.StatusCode:
    async with grpc.aio.insecure_channel(target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        try:
            async for r in stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            ):
                return [s.name for s in r.list_services_response.service]
        except grpc.aio.AioRpcError as e:
            return e.code()
    raise AssertionError("no reflection response")


async def test_reflection_and_admin_can_be_turned_off(
    config: Config, encoder: Any, bundles: Bundles
) -> None:
    async with running_app(config, encoder, bundles.a) as (app, target):
        names = await _reflection_services(target)
        assert isinstance(names, list) and "semroute.v1.RouterService" in names
        assert "semroute.v1.AdminService" in names and app.admin is not None
    cfg = _with_server(config, reflection=False)
    async with running_app(cfg, encoder, bundles.a, enabled=False) as (app, target):
        assert app.admin is None  # even though the admin token is set in the environment
        assert await _reflection_services(target) == grpc.StatusCode.UNIMPLEMENTED
        async with grpc.aio.insecure_channel(target) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await admin_pb2_grpc.AdminServiceStub(ch).GetStatus(
                    apb.GetStatusRequest(), metadata=AUTH, timeout=10
                )
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
            d = await router_pb2_grpc.RouterServiceStub(ch).Route(PROMPT, timeout=10)
            assert d.model
