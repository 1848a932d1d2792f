"""Server lifecycle: bind, load, serve, drain.

The port opens at once with health NOT_SERVING; the encoder and index load
off the event loop, and health turns SERVING only when a request can be
answered. On SIGTERM/SIGINT health turns NOT_SERVING (so load balancers stop
sending), then in-flight calls get `grace_period_s` to finish.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from semroute import metrics as m
from semroute import tracing
from semroute.admin.bundles import serving_config
from semroute.admin.runtime import Admin
from semroute.config import Config, ServerSpec, load_config
from semroute.encoder import Encoder, KernelChoice, default_model_dir, read_metadata
from semroute.encoder.variants import (
    AUTO,
    DEFAULT_NAME,
    available_cores,
    choose_kernels,
    default_cache_dir,
)
from semroute.pipeline import Pipeline
from semroute.route_index import TextEncoder
from semroute.router import Router, RoutingState
from semroute.server.decoding import BadInputLog, GuardedServer
from semroute.server.ext_proc import ExtProcServicer, add_ext_proc_service
from semroute.server.service import RouterServicer, add_router_service
from semroute.server.tls import CertificateReloader
from semroute.v1 import router_pb2

log = logging.getLogger("semroute.server")

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


def choose_encoder_kernels(config: Config, model_dir: Path) -> KernelChoice:
    """The variant and intra-op threads for this CPU (semroute/encoder/variants.py).

    ``auto`` threads are capped so that the inference threads together use no more than the
    cores: a single-stream benchmark would otherwise pick 2 threads per call and the two
    inference threads would then fight over the same cores under load.
    """
    enc = config.encoder
    threads: int | str = enc.intra_op_threads if enc.threads is None else enc.threads
    variant = enc.variant
    if enc.device != "cpu":  # the benchmark measures CPU kernels: nothing to learn for a GPU
        variant = DEFAULT_NAME if variant == AUTO else variant
        threads = enc.intra_op_threads if threads == AUTO else threads
    return choose_kernels(
        model_dir,
        read_metadata(model_dir),
        variant=variant,
        threads=threads,
        max_tokens=enc.max_tokens,
        cache_dir=(
            config.resolve(enc.kernel_cache_dir) if enc.kernel_cache_dir else default_cache_dir()
        ),
        max_threads=max(1, available_cores() // config.server.inference_threads),
    )


def make_encoder(config: Config) -> Encoder:
    """The encoder the config asks for (the bundled model unless it names another)."""
    enc = config.encoder
    model_dir = config.resolve(enc.model_dir) if enc.model_dir else default_model_dir()
    if not model_dir.is_dir():  # let Encoder say what to do about it
        kernel = None
    else:
        kernel = choose_encoder_kernels(config, model_dir)
        log.info(
            "encoder kernels: variant %s, %d intra-op threads (%s)",
            kernel.variant,
            kernel.threads,
            kernel.source,
            extra={"fields": kernel.log_fields()},
        )
    encoder = Encoder(
        model_dir,
        device=enc.device,
        intra_op_threads=kernel.threads if kernel else enc.intra_op_threads,
        max_tokens=enc.max_tokens,
        variant=kernel.variant if kernel else None,
    )
    encoder.kernel = kernel
    if enc.test_delay_ms > 0:
        from semroute.encoder.delay import DelayedEncoder

        log.warning(
            "encoder.test_delay_ms is set: every encoder pass sleeps %g ms", enc.test_delay_ms
        )
        return DelayedEncoder(encoder, enc.test_delay_ms / 1000)  # type: ignore[return-value]
    return encoder


def make_static_encoder(config: Config) -> TextEncoder | None:
    """The static encoder, when the fast tier or the similar-prompt cache uses it."""
    tier = config.fast_tier
    if not (tier.enabled or config.cache.similar_active):
        return None
    from semroute.encoder.static import StaticEncoder, default_static_dir

    return StaticEncoder(
        config.resolve(tier.model_dir) if tier.model_dir else default_static_dir(),
        max_tokens=config.encoder.max_tokens,
        route_head=config.resolve(tier.route_head) if tier.route_head else None,
    )


# Calls beyond Route's limit the transport admits: health checks, admin and
# response-cache calls, and Route calls to be refused with Route's own message.
TRANSPORT_HEADROOM = 64


def transport_limit(limits: ServerSpec) -> int:
    """Calls in flight the gRPC server admits (all services together)."""
    return limits.max_concurrent_requests + TRANSPORT_HEADROOM


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value (threads are tasks on Linux); best effort."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError as e:
        log.warning("cannot lower the inference threads' priority: %s", e)


def load_router(config: Config, index_dir: Path | None = None) -> Router:
    """Build the encoders and the routing state; raises on any bad model or index."""
    encoder = make_encoder(config)
    static = make_static_encoder(config)
    return Router(encoder, RoutingState.load(config, encoder, index_dir, static), static)


class App:
    """One server process: gRPC server, health, reflection and the router."""

    def __init__(
        self,
        config: Config,
        host: str = "127.0.0.1",
        port: int = 50051,
        *,
        index_dir: Path | None = None,
        metrics_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.index_dir = index_dir
        self.pool = ThreadPoolExecutor(
            max_workers=config.server.inference_threads,
            thread_name_prefix="semroute-infer",
            initializer=_lower_priority,
            initargs=(config.server.inference_nice,),
        )
        self.health = health.aio.HealthServicer()
        # Undecodable request bodies, on every service: counted, logged once per interval.
        self.bad_input = BadInputLog()
        # Metrics: counted in the core; exposed here on `metrics.port`, or, as one of
        # `--workers`, written to `metrics_dir` for the parent to serve the sum.
        self.metrics_dir = metrics_dir
        exporting = metrics_dir is not None or config.metrics.port is not None
        self.metrics = m.Recorder() if exporting else m.NULL_RECORDER
        self._metrics_server: m.WSGIServer | None = None
        self._metrics_task: asyncio.Future[None] | None = None
        # The one decide() every transport adapts; RouterService is the gRPC one.
        self.pipeline = Pipeline(config, self.pool, self.metrics)
        self.servicer = RouterServicer(self.pipeline, config.server)
        # Envoy ext_proc on the same port (config.ext_proc); its counters() say what passed through.
        self.ext_proc = ExtProcServicer(self.pipeline, config.ext_proc)
        # AdminService (index hot-swap): None unless an admin token or mTLS is configured.
        self.admin = Admin.from_config(config, self.bad_input)
        self.server: grpc.aio.Server | None = None
        self.tls: CertificateReloader | None = None  # set when server.tls is configured
        self.loaded = asyncio.Event()
        self.load_error: BaseException | None = None

    async def start(self) -> int:
        """Bind and start serving (NOT_SERVING until loaded); returns the bound port."""
        limits = self.config.server
        transport = transport_limit(limits)
        server = grpc.aio.server(
            # Past this many concurrent calls (every service) gRPC refuses a call with
            # RESOURCE_EXHAUSTED before any handler runs, so none waits unseen; Route's
            # own limit (lower) gives the clearer message first.
            maximum_concurrent_rpcs=transport,
            # Off (no OTEL_* set): none, and calls pay nothing for tracing.
            interceptors=tracing.server_interceptors(),
            options=[
                ("grpc.so_reuseport", 1),
                # Queue up to the concurrency limit instead of gRPC's default 1,000
                # (which cancels calls beyond it with CANCELLED, not RESOURCE_EXHAUSTED).
                ("grpc.server.max_pending_requests", transport),
                (
                    "grpc.max_receive_message_length",
                    max(
                        self.config.server.max_prompt_bytes * 4, self.config.ext_proc.max_body_bytes
                    )
                    + 65536,
                ),
            ],
        )
        add_router_service(self.servicer, server, self.bad_input)
        guarded = GuardedServer(server, self.bad_input)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, guarded)
        admin_names = self.admin.register(guarded) if self.admin else ()
        ext_proc_names = (
            add_ext_proc_service(self.ext_proc, guarded) if self.config.ext_proc.enabled else ()
        )
        if limits.reflection:
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
                reflection.aio.ReflectionServicer(
                    (
                        SERVICE_NAME,
                        *admin_names,
                        *ext_proc_names,
                        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                        reflection.SERVICE_NAME,
                    )
                ),
                guarded,
            )
        address = f"{self.host}:{self.port}"
        if limits.tls is not None:
            base = self.config.source.parent if self.config.source else None
            self.tls = CertificateReloader(limits.tls, base)
            self.port = server.add_secure_port(address, self.tls.credentials())
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind {self.host}:{self.port}")
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._start_metrics()
        await server.start()
        self.server = server
        if self.admin:
            await self.admin.start()
        log.info(
            "listening",
            extra={
                "fields": {
                    "host": self.host,
                    "port": self.port,
                    "tls": "mutual" if self.tls and self.tls.mutual else bool(self.tls),
                    "reflection": limits.reflection,
                    "admin": self.admin is not None,
                }
            },
        )
        return self.port

    def metrics_snapshot(self) -> m.Snapshot:
        """This process's counts, gauges and active versions (on the event loop)."""
        p = self.pipeline
        return self.metrics.snapshot(
            queue_depth=p.batcher.queued if p.batcher is not None else 0,
            malformed=self.bad_input.total,
            versions=m.router_versions(p.router),
            ext_proc=self.ext_proc.counters(),
        )

    def _start_metrics(self) -> None:
        spec = self.config.metrics
        interval = spec.snapshot_interval_s
        if self.metrics_dir is not None:
            self._metrics_task = asyncio.ensure_future(
                m.write_periodically(self.metrics_dir, interval, self.metrics_snapshot)
            )
        elif spec.port is not None:
            loop = asyncio.get_running_loop()
            self._metrics_server = m.serve(
                spec.host, spec.port, m.on_loop(loop, self.metrics_snapshot)
            )
            self._metrics_task = asyncio.ensure_future(m.fold_periodically(self.metrics, interval))

    async def _stop_metrics(self) -> None:
        if self._metrics_task is not None:
            self._metrics_task.cancel()
        if self.metrics_dir is not None:  # the last counts, for the parent's sum
            m.write_snapshot(self.metrics_dir, self.metrics_snapshot())
        if self._metrics_server is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._metrics_server.shutdown)
            self._metrics_server.server_close()
            self._metrics_server = None

    async def load(self) -> None:
        """Load the encoder and index off the loop, then turn SERVING."""
        t0 = time.perf_counter()
        # Every FAISS search on the request path is one query from this (the
        # loop's) thread. An OpenMP team for it must wait for a second core
        # that the encoder threads hold, and spins meanwhile: measured 20% of
        # the server's CPU in IndexIDMap.search (benchmarks/profile.py). One
        # thread; OpenMP settings are per calling thread.
        faiss.omp_set_num_threads(1)
        loop = asyncio.get_running_loop()
        try:
            router = await loop.run_in_executor(self.pool, load_router, self.config, self.index_dir)
        except BaseException as e:
            self.load_error = e
            self.loaded.set()
            raise
        # Warm up: the first onnxruntime run allocates and is slow.
        await loop.run_in_executor(self.pool, router.encoder.encode, ["warm up the encoder"])
        self.pipeline.set_router(router)
        # The model, index and config live as long as the process: keep the
        # collector from rescanning them (a full collection walks every tracked
        # object on the event loop's thread). No result file measures the pause.
        gc.collect()
        gc.freeze()
        if self.admin:
            self.admin.attach(
                router, self.pipeline, self.index_dir or self.config.resolved_index_path()
            )
            await self.admin.restore()  # the last bundle activated, when it is recorded
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.loaded.set()
        log.info(
            "serving",
            extra={
                "fields": {
                    "index_version": router.state.index.version,
                    "encoder_id": router.encoder.id,
                    "providers": router.encoder.providers,
                    "config_version": self.config.version,
                    "load_s": round(time.perf_counter() - t0, 3),
                }
            },
        )

    async def stop(self, grace: float | None = None) -> None:
        """Turn NOT_SERVING, then drain in-flight calls for up to `grace` seconds."""
        if self.server is None:
            return
        if self.admin:  # first: no index swap may start while the server drains
            await self.admin.close()
        self.bad_input.flush()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        grace = self.config.server.grace_period_s if grace is None else grace
        log.info("draining", extra={"fields": {"grace_s": grace}})
        await self.server.stop(grace)
        self.server = None
        await self._stop_metrics()
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.pipeline.decisions is not None:  # write what is queued, off the loop
            await asyncio.get_running_loop().run_in_executor(None, self.pipeline.decisions.close)
        log.info("stopped")

    async def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)


async def serve_until_signalled(app: App) -> int:
    """Run `app` until SIGTERM/SIGINT; returns the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    load = asyncio.ensure_future(app.load())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({load, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if load.done() and load.exception() is not None:
        log.error("startup failed", extra={"fields": {"error": str(load.exception())}})
        stopper.cancel()
        await app.stop(0)
        return 1
    await stopper
    load.cancel()
    await app.stop()
    return 0


def with_metrics(config: Config, host: str | None, port: int | None) -> Config:
    """`config` with the command line's metrics host and port, where given."""
    update = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if not update:
        return config
    return config.model_copy(update={"metrics": config.metrics.model_copy(update=update)})


def run_process(
    config_path: str | None,
    host: str,
    port: int,
    index_dir: str | None,
    metrics_host: str | None = None,
    metrics_port: int | None = None,
    metrics_dir: str | None = None,
) -> int:
    """Entry point of one server process (also the target of each worker, which
    writes its metrics to `metrics_dir` instead of serving them)."""
    import uvloop

    from semroute.logs import setup_logging

    setup_logging()
    tracing.configure()  # from the OTEL_* environment; off when nothing is set
    index = Path(index_dir) if index_dir else None
    # A self-contained bundle (--index) brings its routing sections with it.
    config = serving_config(
        with_metrics(load_config(config_path), metrics_host, metrics_port), index
    )
    app = App(
        config,
        host,
        port,
        index_dir=index,
        metrics_dir=Path(metrics_dir) if metrics_dir else None,
    )
    return uvloop.run(serve_until_signalled(app))


def run_workers(
    config_path: str | None,
    host: str,
    port: int,
    index_dir: str | None,
    workers: int,
    metrics_host: str | None = None,
    metrics_port: int | None = None,
) -> int:
    """Run `workers` server processes sharing one port through SO_REUSEPORT.

    The kernel spreads connections across processes, so each process (its own
    GIL, event loop and encoder) serves a share of the gateways' connections.
    With metrics on, this parent serves `/metrics`: the sum of the snapshots its
    workers write to a private directory (see semroute/metrics.py).
    """
    if port == 0:
        raise ValueError("--workers > 1 needs a fixed --port (each process binds the same one)")
    spec = with_metrics(load_config(config_path), metrics_host, metrics_port).metrics
    metrics_dir = metrics_server = None
    if spec.port is not None:
        directory = Path(tempfile.mkdtemp(prefix="semroute-metrics-"))
        metrics_dir = str(directory)
        try:
            metrics_server = m.serve(
                spec.host,
                spec.port,
                lambda: m.read_snapshots(directory, spec.snapshot_interval_s),
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=run_process,
            args=(config_path, host, port, index_dir, None, None, metrics_dir),
            name=f"semroute-{i}",
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    if metrics_server is not None and metrics_dir is not None:
        metrics_server.shutdown()
        metrics_server.server_close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return max((p.exitcode or 0) for p in procs)
