"""`python -m semroute.admin`: build self-contained bundles, and drive a server's AdminService.

    python -m semroute.admin build --config configs/default.yaml --out var/bundles/v2 \\
        --probes tests/data/route_probes.yaml --archive var/bundles/v2.tar.gz
    python -m semroute.admin load /abs/path/var/bundles/v2 --shadow --rate 0.1
    python -m semroute.admin status
    python -m semroute.admin activate routes-2026...-abcd1234
    python -m semroute.admin rollback

The token is read from $SEMROUTE_ADMIN_TOKEN (`--token-env` names another
variable); `--ca/--cert/--key` speak mTLS to a separate admin port.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_TARGET = "127.0.0.1:50051"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m semroute.admin", description=__doc__)
    sub = parser.add_subparsers(dest="admin_command", required=True)
    add_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def register(sub: argparse._SubParsersAction) -> None:
    """Hook for the `semroute` command: `semroute admin ...`."""
    p = sub.add_parser("admin", help="build bundles; hot-swap a running server's index")
    add_commands(p.add_subparsers(dest="admin_command", required=True))


def add_commands(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build", help="build a self-contained routes bundle (index + config)")
    b.add_argument("--config", help="YAML config (default: configs/default.yaml)")
    b.add_argument("--out", required=True, help="bundle directory to write")
    b.add_argument("--probes", help="YAML {route: [held-out prompt, ...]}: eval figures")
    b.add_argument("--eval-json", help="JSON object of extra eval figures to record")
    b.add_argument("--archive", help="also write this .tar.gz of the bundle")
    b.set_defaults(func=_build)

    p = sub.add_parser("pack", help="archive a bundle directory as .tar.gz")
    p.add_argument("bundle")
    p.add_argument("out")
    p.set_defaults(func=_pack)

    def client(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help)
        c.add_argument("--target", default=DEFAULT_TARGET, help="admin address host:port")
        c.add_argument("--token-env", default="SEMROUTE_ADMIN_TOKEN", help="env var of the token")
        c.add_argument("--ca", help="mTLS: CA certificate of the server")
        c.add_argument("--cert", help="mTLS: client certificate")
        c.add_argument("--key", help="mTLS: client key")
        c.add_argument("--timeout", type=float, default=120.0)
        return c

    c = client("load", "load a bundle dir/.tar.gz on the server (path on the server)")
    c.add_argument("path")
    c.add_argument("--config-path", default="", help="for a bundle without its config")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--activate", action="store_true", help="activate it once loaded")
    g.add_argument("--shadow", action="store_true", help="shadow it once loaded")
    c.add_argument("--rate", type=float, help="shadow sample rate 0-1")
    c.set_defaults(func=_load)

    c = client("activate", "activate (or --shadow) a loaded version")
    c.add_argument("version")
    c.add_argument("--shadow", action="store_true")
    c.add_argument("--rate", type=float, help="shadow sample rate 0-1")
    c.set_defaults(func=_activate)

    c = client("rollback", "re-activate the previously active version")
    c.add_argument("--to", default="", help="a specific earlier version")
    c.set_defaults(func=_rollback)

    for name, rpc, help in (
        ("status", "GetStatus", "active version, shadow figures, swaps, memory"),
        ("list", "ListIndexes", "bundles known to the server"),
        ("stop-shadow", "StopShadow", "stop shadowing; print the final figures"),
    ):
        c = client(name, help)
        c.set_defaults(func=_simple, rpc=rpc)

    c = client("unload", "release a loaded, unused version")
    c.add_argument("version")
    c.set_defaults(func=_unload)


def _build(args: argparse.Namespace) -> int:
    import yaml

    from semroute.admin.bundles import build_bundle, pack_archive
    from semroute.admin.probes import evaluate_probes
    from semroute.config import load_config
    from semroute.router import Router, RoutingState
    from semroute.server.app import make_encoder, make_static_encoder

    config = load_config(args.config)
    encoder, static = make_encoder(config), make_static_encoder(config)
    figures: dict[str, float] = {}
    if args.eval_json:
        figures.update(json.loads(Path(args.eval_json).read_text()))
    out = Path(args.out)
    manifest = build_bundle(config, encoder, out, static_encoder=static, eval_figures=figures)
    if args.probes:  # evaluate the built bundle, then rebuild it with the figures recorded
        probes = yaml.safe_load(Path(args.probes).read_text())
        state = (
            RoutingState.load(config, encoder, out, static)
            if static
            else RoutingState.load(config, encoder, out)
        )
        figures.update(evaluate_probes(Router(encoder, state, static), state, probes))
        manifest = build_bundle(config, encoder, out, static_encoder=static, eval_figures=figures)
    print(f"built {manifest['version']} ({manifest['count']} utterances) -> {out}")
    for k, v in sorted(figures.items()):
        print(f"  eval {k} = {v:.4g}")
    if args.archive:
        print(f"archived -> {pack_archive(out, Path(args.archive))}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from semroute.admin.bundles import pack_archive

    print(pack_archive(Path(args.bundle), Path(args.out)))
    return 0


def _stub(args: argparse.Namespace) -> tuple[Any, Any]:
    import grpc

    from semroute.v1 import admin_pb2_grpc

    if args.ca or args.cert or args.key:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(args.ca).read_bytes() if args.ca else None,
            private_key=Path(args.key).read_bytes() if args.key else None,
            certificate_chain=Path(args.cert).read_bytes() if args.cert else None,
        )
        channel = grpc.secure_channel(args.target, creds)
    else:
        channel = grpc.insecure_channel(args.target)
    return channel, admin_pb2_grpc.AdminServiceStub(channel)


def _metadata(args: argparse.Namespace) -> list[tuple[str, str]]:
    token = os.environ.get(args.token_env, "")
    return [("authorization", f"Bearer {token}")] if token else []


def to_plain(message: Any) -> dict[str, Any]:
    """A message as JSON-ready data, 64-bit counters as numbers (protobuf's JSON makes
    them strings)."""
    from google.protobuf.json_format import MessageToDict

    def fix(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return int(v) if isinstance(v, str) and v.isdigit() else v

    return fix(
        MessageToDict(
            message,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    )


def _invoke(args: argparse.Namespace, rpc: str, request: Any) -> int:
    import grpc

    channel, stub = _stub(args)
    try:
        resp = getattr(stub, rpc)(request, timeout=args.timeout, metadata=_metadata(args))
    except grpc.RpcError as e:
        print(f"{rpc}: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    doc = to_plain(resp)
    print(json.dumps(doc, indent=2))
    return 0


def _load(args: argparse.Namespace) -> int:
    from semroute.v1 import admin_pb2 as apb

    mode = (
        apb.ACTIVATION_MODE_ACTIVE
        if args.activate
        else apb.ACTIVATION_MODE_SHADOW
        if args.shadow
        else apb.ACTIVATION_MODE_UNSPECIFIED
    )
    req = apb.LoadIndexRequest(path=args.path, config_path=args.config_path, activate=mode)
    if args.rate is not None:
        req.shadow_sample_rate = args.rate
    return _invoke(args, "LoadIndex", req)


def _activate(args: argparse.Namespace) -> int:
    from semroute.v1 import admin_pb2 as apb

    mode = apb.ACTIVATION_MODE_SHADOW if args.shadow else apb.ACTIVATION_MODE_ACTIVE
    req = apb.ActivateIndexRequest(version=args.version, mode=mode)
    if args.rate is not None:
        req.shadow_sample_rate = args.rate
    return _invoke(args, "ActivateIndex", req)


def _rollback(args: argparse.Namespace) -> int:
    from semroute.v1 import admin_pb2 as apb

    return _invoke(args, "Rollback", apb.RollbackRequest(to_version=args.to))


def _unload(args: argparse.Namespace) -> int:
    from semroute.v1 import admin_pb2 as apb

    return _invoke(args, "UnloadIndex", apb.UnloadIndexRequest(version=args.version))


def _simple(args: argparse.Namespace) -> int:
    from semroute.v1 import admin_pb2 as apb

    request = getattr(apb, f"{args.rpc}Request")()
    return _invoke(args, args.rpc, request)


if __name__ == "__main__":
    sys.exit(main())
