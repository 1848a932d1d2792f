"""Trivial-RPC baseline: RouterService.Route on the real server stack, without routing.

Same stack as `semroute serve` (grpc.aio + uvloop, grpc.health.v1, SO_REUSEPORT
workers), but the handler returns one pre-built, realistically sized
RouteDecision. What it sustains is the ceiling of a unary Route API on this
machine: the real server is reported as a ratio against it.

    python -m benchmarks.echo_server --port 50051 [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from semroute.v1 import router_pb2, router_pb2_grpc

SERVICE_NAME = "semroute.v1.RouterService"


def fixed_decision() -> router_pb2.RouteDecision:
    """Shaped like a real decision (7 candidates, matches, timing): same serialization cost."""
    models = [
        ("mistral-small-3.2", "mistral", 0.66, 0.00011),
        ("deepseek-v3.2", "deepseek", 0.74, 0.00018),
        ("gemini-2.5-flash", "google", 0.76, 0.00071),
        ("claude-haiku-4.5", "anthropic", 0.80, 0.0014),
        ("claude-sonnet-4.5", "anthropic", 0.90, 0.0042),
        ("gpt-5.5", "openai", 0.95, 0.0081),
        ("claude-opus-4.5", "anthropic", 0.96, 0.0069),
    ]
    return router_pb2.RouteDecision(
        request_id="echo",
        model="claude-haiku-4.5",
        provider="anthropic",
        fallbacks=["gemini-2.5-flash", "claude-sonnet-4.5"],
        route="general",
        confidence=1.0,
        reason=router_pb2.DECISION_REASON_DEFAULT,
        quality_bar=0.8,
        candidates=[
            router_pb2.Candidate(
                model=m,
                provider=p,
                predicted_quality=q,
                estimated_cost_usd=c,
                eligible=True,
                meets_bar=q >= 0.8,
            )
            for m, p, q, c in models
        ],
        matches=[
            router_pb2.RouteMatch(route="general", score=0.41),
            router_pb2.RouteMatch(route="code_generation", score=0.22),
        ],
        index_version="echo",
        encoder_id="none",
        config_version="echo",
        timing=router_pb2.Timing(),
    )


class EchoRouter(router_pb2_grpc.RouterServiceServicer):
    def __init__(self) -> None:
        self._decision = fixed_decision()

    async def Route(
        self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.RouteDecision:
        return self._decision


async def serve(host: str, port: int) -> None:
    # The server options semroute's own server sets (see semroute/server/app.py).
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    router_pb2_grpc.add_RouterServiceServicer_to_server(EchoRouter(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"echo server: cannot bind {host}:{port}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace=2.0)


def run_one(host: str, port: int) -> None:
    """Run one server process on uvloop (asyncio's default loop when uvloop is missing)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(host, port))
    else:
        uvloop.run(serve(host, port))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 is accepted")
    ap.add_argument("--port", type=int, default=50051)
    ap.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (SO_REUSEPORT)"
    )
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        ap.error("the echo server only listens on 127.0.0.1")
    if args.workers <= 1:
        run_one("127.0.0.1", args.port)
        return 0
    if args.port == 0:
        ap.error("--workers > 1 needs a fixed --port (every process binds the same one)")
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=run_one, args=("127.0.0.1", args.port), daemon=True)
        for _ in range(args.workers)
    ]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()  # SIGTERM: each worker drains gracefully

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    return max((p.exitcode or 0) for p in procs)


if __name__ == "__main__":
    sys.exit(main())
