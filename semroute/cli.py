"""The `semroute` command: serve, route, index build (and the quality tools)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from semroute.bundle import BundleError
from semroute.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from semroute.encoder import Encoder
    from semroute.route_index import TextEncoder

DEFAULT_TARGET = "127.0.0.1:50051"


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and flag; separate from `main` so deployment files (examples/k8s)
    can be checked against the real flags."""
    parser = argparse.ArgumentParser(prog="semroute", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gRPC routing service")
    p.add_argument("--config", help="YAML config (default: configs/default.yaml)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--workers", type=int, default=1, help="server processes sharing the port")
    p.add_argument(
        "--index",
        help="index bundle: a directory or .tar.gz archive; one with its own config.yaml "
        "brings its routing sections (default: the config's index_path)",
    )
    p.add_argument(
        "--metrics-port", type=int, help="serve Prometheus /metrics here (config: metrics.port)"
    )
    p.add_argument("--metrics-host", help="address for /metrics (default 127.0.0.1)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("route", help="ask for a routing decision")
    p.add_argument("text", nargs="?", help="the prompt (or use --messages)")
    p.add_argument("--messages", help="JSON file with an OpenAI-style messages list")
    p.add_argument("--target", default=DEFAULT_TARGET, help="server address host:port")
    p.add_argument("--local", action="store_true", help="decide in-process, no server")
    p.add_argument("--config", help="YAML config for --local")
    p.add_argument("--allow", action="append", default=[], help="allowed model (repeatable)")
    p.add_argument("--exclude", action="append", default=[], help="excluded model (repeatable)")
    p.add_argument("--tag", action="append", default=[], help="required tag (repeatable)")
    p.add_argument("--knob", type=float, help="cost/quality preference 0-1")
    p.add_argument("--preset", choices=["balanced", "cost", "quality"])
    p.add_argument("--max-cost", type=float, help="max estimated cost in USD")
    p.add_argument("--json", action="store_true", help="print the full decision as JSON")
    p.set_defaults(func=_route)

    p = sub.add_parser("index", help="manage index bundles")
    isub = p.add_subparsers(dest="index_command", required=True)
    b = isub.add_parser("build", help="embed the config's route utterances into a bundle")
    b.add_argument("--config", help="YAML config (default: configs/default.yaml)")
    b.add_argument("--out", help="bundle dir (default: the config's index_path)")
    b.set_defaults(func=_index_build)

    p = sub.add_parser(
        "eval-routes", help="route accuracy on your labelled prompts (JSONL: prompt, label)"
    )
    p.add_argument("--data", required=True, help='JSONL lines {"prompt": ..., "label": ROUTE}')
    p.add_argument("--config", help="YAML config (default: configs/default.yaml)")
    p.add_argument("--png", help="confusion-matrix PNG (default: next to --data)")
    p.add_argument("--json", dest="json_out", help="write the metrics as JSON here")
    p.set_defaults(func=_eval_routes)

    p = sub.add_parser(
        "replay", help="re-decide a decision log against a candidate bundle and diff (offline)"
    )
    p.add_argument("log", nargs="+", help="decision log file(s) (decision_log.path, rotated too)")
    p.add_argument("--bundle", required=True, help="candidate bundle: a directory or .tar.gz")
    p.add_argument("--config", help="YAML config for the encoder (default: configs/default.yaml)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_replay)

    _register_tools(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"semroute: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`semroute route ... | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _register_tools(sub: argparse._SubParsersAction) -> None:
    """The learned-routing tools (train, calibrate, eval) and the admin client."""
    from semroute.admin.cli import register as register_admin
    from semroute.quality.cli import register as register_quality

    register_quality(sub)
    register_admin(sub)


def _serve(args: argparse.Namespace) -> int:
    from semroute.logs import setup_logging
    from semroute.server.app import run_process, run_workers

    setup_logging()
    config = load_config(args.config)
    index, staged = None, None
    if not args.index:
        _ensure_default_index(config)
    else:
        try:
            index, staged = _stage_index(config, Path(args.index))
        except BundleError as e:
            print(f"semroute serve: {e}", file=sys.stderr)
            return 2
    try:
        metrics = (args.metrics_host, args.metrics_port)
        if args.workers > 1:
            return run_workers(args.config, args.host, args.port, index, args.workers, *metrics)
        return run_process(args.config, args.host, args.port, index, *metrics)
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)


def _stage_index(config: Config, path: Path) -> tuple[str, Path | None]:
    """`serve --index`: an archive unpacked once (with the admin side's checks) for every
    worker, and the bundle's own config checked before any process starts; returns the
    bundle dir and the staging dir to remove on exit."""
    from semroute.admin import bundles

    spec = config.admin
    root = config.resolve(spec.staging_dir) if spec.staging_dir else bundles.default_staging_root()
    bundle_dir, staged = bundles.stage_for_serving(path, root, spec.max_archive_bytes)
    try:
        bundles.serving_config(config, bundle_dir)
    except BaseException:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
        raise
    return str(bundle_dir), staged


def _eval_routes(args: argparse.Namespace) -> int:
    """Decide every labelled prompt in-process (the serving pipeline, no cache) and score it."""
    from semroute.route_eval import (
        format_report,
        plot_confusion,
        read_labelled,
        route_metrics,
        route_prices,
    )
    from semroute.server.app import load_router
    from semroute.types import RouteQuery

    try:
        items = read_labelled(args.data)
    except (OSError, ValueError) as e:
        print(f"semroute eval-routes: {e}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    known = {r.name for r in config.routes}
    unknown = sorted({i.label for i in items} - known)
    if unknown:
        print(
            f"semroute eval-routes: labels that are not routes of the config: "
            f"{', '.join(unknown)} (routes: {', '.join(sorted(known))})",
            file=sys.stderr,
        )
        return 2
    _ensure_default_index(config)
    router = load_router(config)
    predicted = [router.route(RouteQuery(text=i.prompt)).route for i in items]
    metrics = route_metrics(items, predicted, route_prices(router.state.policy, config))
    # Files first: a reader that closes the pipe early (`| head`) must not lose them.
    png = Path(args.png) if args.png else Path(args.data).with_suffix(".confusion.png")
    plot_confusion(metrics, png, f"{Path(args.data).name}: accuracy {metrics['accuracy']:.3f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(metrics, indent=1) + "\n")
    print(format_report(metrics))
    print(f"confusion matrix: {png}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    """Exit 0 when decisions were replayed, 1 when none could be (no prompts), 2 on bad input."""
    from semroute.bundle import BundleError
    from semroute.replay import ReplayReport, candidate_router, format_report, read_records, replay

    logs = [Path(p) for p in args.log]
    missing = [str(p) for p in logs if not p.is_file()]
    if missing:
        print(f"semroute replay: no such log: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        router = candidate_router(Path(args.bundle), args.config)
    except BundleError as e:
        print(f"semroute replay: {e}", file=sys.stderr)
        return 2
    report = ReplayReport()
    replay(read_records(logs, report), router, report)
    print(json.dumps(report.to_dict(), indent=1) if args.json else format_report(report))
    return 0 if report.replayed else 1


def _encoder(config: Config) -> Encoder:
    from semroute.server.app import make_encoder

    return make_encoder(config)


def _encoders(config: Config) -> tuple[Encoder, TextEncoder | None]:
    from semroute.router import index_static_encoder
    from semroute.server.app import make_static_encoder

    encoder = _encoder(config)
    return encoder, index_static_encoder(config, make_static_encoder(config), encoder)


def _ensure_default_index(config: Config) -> None:
    """The config's own index is derived from it: (re)build it when missing or stale.

    An index passed explicitly (--index) is never rebuilt; the server refuses a stale one.
    """
    import logging

    from semroute.route_index import build_route_index, is_current

    path = config.resolved_index_path()
    encoder, static = _encoders(config)
    if is_current(path, config, encoder.id, static.id if static else None):
        return
    logging.getLogger("semroute.cli").info(
        "index missing or built from other routes; building it",
        extra={"fields": {"path": str(path)}},
    )
    build_route_index(config, encoder, path, static)


def _index_build(args: argparse.Namespace) -> int:
    from semroute.route_index import build_route_index

    config = load_config(args.config)
    out = Path(args.out) if args.out else config.resolved_index_path()
    encoder, static = _encoders(config)
    manifest = build_route_index(config, encoder, out, static)
    print(f"built {manifest['version']}: {manifest['count']} utterances -> {out}")
    return 0


def _route(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from semroute.v1 import router_pb2 as pb

    req = pb.RouteRequest(
        allowed_models=args.allow, excluded_models=args.exclude, required_tags=args.tag
    )
    if args.messages:
        msgs = json.loads(Path(args.messages).read_text())
        req.messages.extend(pb.ChatMessage(role=m["role"], content=m["content"]) for m in msgs)
    elif args.text:
        req.prompt = args.text
    else:
        print("semroute route: give a prompt or --messages FILE", file=sys.stderr)
        return 2
    if args.knob is not None:
        req.quality_preference = args.knob
    if args.preset:
        req.preset = pb.Preset.Value(f"PRESET_{args.preset.upper()}")
    if args.max_cost is not None:
        req.max_cost_usd = args.max_cost
    try:
        decision = _route_local(req, args.config) if args.local else _route_remote(req, args.target)
    except _RouteFailed as e:
        print(f"semroute route: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(MessageToDict(decision, preserving_proto_field_name=True), indent=2))
    else:
        _print_decision(decision)
    return 0


class _RouteFailed(Exception):
    pass


def _route_remote(req, target: str):  # type: ignore[no-untyped-def]
    import grpc

    from semroute.v1 import router_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        try:
            return stub.Route(req, timeout=10)
        except grpc.RpcError as e:
            hint = ""
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                hint = " (is `semroute serve` running? or use --local)"
            raise _RouteFailed(f"{e.code().name}: {e.details()}{hint}") from None


def _route_local(req, config_path: str | None):  # type: ignore[no-untyped-def]
    from semroute.messages import decision_to_proto, query_from_proto
    from semroute.server.app import load_router
    from semroute.types import RoutingError

    config = load_config(config_path)
    _ensure_default_index(config)
    router = load_router(config)
    try:
        return decision_to_proto(router.route(query_from_proto(req, config.server)))
    except RoutingError as e:
        raise _RouteFailed(f"{e.code}: {e.message}") from None


def _print_decision(d) -> None:  # type: ignore[no-untyped-def]
    from semroute.v1 import router_pb2 as pb

    reason = pb.DecisionReason.Name(d.reason).removeprefix("DECISION_REASON_").lower()
    print(f"model:     {d.model} ({d.provider})")
    print(
        f"route:     {d.route or '-'}  confidence {d.confidence:.2f}  reason {reason}"
        + (f"  rule {d.rule}" if d.rule else "")
    )
    print(f"bar:       quality >= {d.quality_bar:.2f}")
    print(f"fallbacks: {', '.join(d.fallbacks) or '-'}")
    for c in d.candidates:
        mark = "*" if c.model == d.model else " "
        status = "ok" if c.eligible else c.ineligible_reason
        q, cost = c.predicted_quality, c.estimated_cost_usd
        print(f"  {mark} {c.model:<20} q={q:.2f}  ${cost:.6f}  {status}")
    if d.matches:
        print("matches:   " + ", ".join(f"{m.route} {m.score:.2f}" for m in d.matches))
    print(f"versions:  index {d.index_version}  encoder {d.encoder_id}  config {d.config_version}")
    if d.classifier_version:
        print(f"classifier: {d.classifier_version}")
    t = d.timing
    print(f"timing:    {t.total_us} µs (encode {t.encode_us}, search {t.search_us})")


if __name__ == "__main__":
    sys.exit(main())
