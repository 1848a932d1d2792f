"""Prometheus `/metrics`: real servers on loopback, scraped and parsed as Prometheus text."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from semroute import metrics as m
from semroute.config import Config
from semroute.router import Router
from semroute.server import app as app_module
from semroute.server.app import App
from semroute.v1 import router_pb2 as pb
from semroute.v1 import router_pb2_grpc

from .conftest import (
    ENCODER_BOUND_PROMPT,
    REPO,
    free_port,
    tiers_until_each_worker_encoded,
    wait_serving,
)
from .test_lifecycle import _hold_then_overflow, _overload_app

ROUTE = "/semroute.v1.RouterService/Route"
# (family name, labels) -> value; histogram and counter samples keep their suffixes.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[Samples, set[str]]:
    """The samples of one scrape, and the names of its metric families."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    samples: Samples = {}
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, names


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name`'s samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def _serve(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "semroute", "serve", "--host", "127.0.0.1", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def metrics_server(
    index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """`semroute serve --metrics-port`: (gRPC target, metrics port)."""
    port, metrics_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("metrics") / "server.log"
    proc = _serve(
        ["--port", str(port), "--index", str(index_dir), "--metrics-port", str(metrics_port)], log
    )
    try:
        wait_serving(f"127.0.0.1:{port}", proc=proc)
        yield f"127.0.0.1:{port}", metrics_port
    finally:
        _stop(proc, log)


# --- the recorder and the sum over workers, without a server ---------------------------


def test_cache_hits_are_labelled_by_their_template_and_workers_add_up() -> None:
    r = m.Recorder()
    d = pb.RouteDecision(
        route="faq_lookup", model="m1", reason=pb.DECISION_REASON_RULE, tier=pb.TIER_RULE
    )
    t0 = time.perf_counter_ns()
    r.decided(d, t0)
    template = pb.RouteDecision(route="faq_lookup", model="m1", reason=pb.DECISION_REASON_RULE)
    template.tier = pb.TIER_CACHE
    for _ in range(3):
        r.cache_hit(m.WIRE, template.SerializeToString(), t0)
    r.refused(m.OVERLOAD)
    r.failed("RESOURCE_EXHAUSTED")  # counted by its cause where raised, not again
    r.failed("INVALID_ARGUMENT")
    r.batch(3)
    fresh = r.snapshot(
        queue_depth=2, versions={"index_version": "a"}, ext_proc={"routed": 5, "model": 1}
    )
    stale = {**fresh, "time": 0.0, "versions": [{"index_version": "old"}]}
    s = m.merge([fresh, stale], stale_before=1.0)
    assert sorted(map(tuple, s["decisions"])) == [
        ("faq_lookup", "m1", "rule", "cache", 6),
        ("faq_lookup", "m1", "rule", "rule", 2),
    ]
    assert s["cache_hits"]["wire"] == 6 and s["cache_misses"]["wire"] == 0
    assert s["refusals"]["overload"] == 2 and s["refusals"]["invalid_argument"] == 2
    assert sum(s["refusals"].values()) == 4
    assert sum(s["latency"]["cache"]["buckets"]) == 6
    assert s["batch_sizes"]["sum"] == 6
    # gauges and versions only from the live (fresh) worker
    assert s["queue_depth"] == 2 and s["processes"] == 1
    assert s["versions"] == [{"index_version": "a"}]
    # Envoy ext_proc outcomes are counters: summed over workers, and exposed by outcome.
    assert s["ext_proc"] == {"routed": 10, "model": 2}
    families = {f.name: f for f in m.SnapshotCollector(lambda: s).collect()}
    samples = {x.labels["outcome"]: x.value for x in families["semroute_ext_proc_requests"].samples}
    assert samples == {"routed": 10, "model": 2}


# --- one process -------------------------------------------------------------------------


def test_metrics_count_decisions_caches_latency_refusals_and_versions(
    metrics_server: tuple[str, int],
) -> None:
    target, port = metrics_server
    before, names = scrape(port)
    expected = {
        "semroute_decisions", "semroute_decision_latency_seconds", "semroute_cache_hits",
        "semroute_cache_misses", "semroute_refusals", "semroute_encoder_queue_depth",
        "semroute_encoder_batch_size", "semroute_routing_info",
    }  # fmt: skip
    assert expected <= names
    prompts = [
        "what are your opening hours?",
        "write a python function that merges two sorted lists",
        "summarize this quarterly report in three bullet points",
        "design a sharded, replicated key-value store with exactly-once semantics",
        # Last, and one the cascade's static head is unsure of: it reaches the encoder (a
        # batch is counted) and `last` names the encoder's classifier, as the info metric does.
        ENCODER_BOUND_PROMPT,
    ]
    repeats = 5
    decided: Counter[tuple[str, str]] = Counter()
    with grpc.insecure_channel(target) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        last = None
        for prompt in prompts:
            for _ in range(repeats):
                last = stub.Route(pb.RouteRequest(prompt=prompt), timeout=30)
                decided[(last.route, last.model)] += 1
        with pytest.raises(grpc.RpcError) as bad:
            stub.Route(pb.RouteRequest(prompt="   "), timeout=30)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as garbage:
            ch.unary_unary(ROUTE)(b"\xff\xff\xff", timeout=30)
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert last is not None
    after, _ = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    calls = len(prompts) * repeats
    assert delta("semroute_decisions_total") == calls
    for (route, model), n in decided.items():
        assert delta("semroute_decisions_total", route=route, model=model) == n
    # every repeat of an exact request is a wire hit, answered at tier cache
    assert delta("semroute_cache_hits_total", cache="wire") == calls - len(prompts)
    assert delta("semroute_cache_misses_total", cache="wire") >= len(prompts)
    assert delta("semroute_decisions_total", tier="cache") == calls - len(prompts)
    # µs-scale buckets: the smallest is at most 50 µs
    bounds = {
        float(dict(ls)["le"])
        for (n, ls), _ in after.items()
        if n == "semroute_decision_latency_seconds_bucket"
    }
    assert min(bounds) <= 50e-6
    assert delta("semroute_decision_latency_seconds_count") == calls
    assert delta("semroute_decision_latency_seconds_count", tier="cache") == calls - len(prompts)
    assert delta("semroute_refusals_total", cause="invalid_argument") == 1
    assert delta("semroute_refusals_total", cause="malformed") == 1
    assert delta("semroute_refusals_total") == 2
    assert total(after, "semroute_encoder_batch_size_count") >= 1
    assert ("semroute_encoder_queue_depth", ()) in after
    info = [dict(ls) for (n, ls), v in after.items() if n == "semroute_routing_info" and v == 1]
    assert info == [
        {
            "index_version": last.index_version,
            "config_version": last.config_version,
            "classifier_version": last.classifier_version,
            "encoder_id": last.encoder_id,
        }
    ]
    assert last.classifier_version  # the default config decides by the classifier


# --- in-process: refusals under forced limits, versions after a swap --------------------


def _with_metrics(config: Config) -> tuple[Config, int]:
    port = free_port()
    return config.model_copy(
        update={"metrics": config.metrics.model_copy(update={"port": port})}
    ), port


@pytest.mark.parametrize(
    ("limits", "cause"),
    [
        ({"max_concurrent_requests": 3, "max_queue_wait_ms": 0}, "overload"),
        ({"max_queue": 3, "max_queue_wait_ms": 0}, "encoder_queue_full"),
        ({"max_queue_wait_ms": 100}, "encoder_saturated"),
    ],
)
async def test_refusals_are_counted_by_cause(
    config: Config,
    index_dir: Path,
    router: Router,
    monkeypatch: pytest.MonkeyPatch,
    limits: dict[str, int],
    cause: str,
) -> None:
    cfg, port = _with_metrics(config)
    app, held = await _overload_app(cfg, index_dir, router, monkeypatch, **limits)
    try:
        admitted = 5 if cause == "encoder_saturated" else 3
        extra = (await _hold_then_overflow(app, held, admitted=admitted))[0]
        samples, _ = await asyncio.to_thread(scrape, port)
    finally:
        await app.stop(grace=5)
    assert isinstance(extra, grpc.aio.AioRpcError)
    assert extra.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert total(samples, "semroute_refusals_total", cause=cause) == 1
    assert total(samples, "semroute_refusals_total") == 1
    # the calibration call and the admitted ones, each run by the encoder alone (max_batch 1)
    assert total(samples, "semroute_decisions_total", tier="encoder") == 1 + admitted
    assert total(samples, "semroute_encoder_batch_size_bucket", le="1.0") == 1 + admitted


async def test_the_info_metric_follows_an_index_swap(
    config: Config, index_dir: Path, router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = Router(router.encoder, router.state)  # swapped here without touching the shared one
    monkeypatch.setattr(app_module, "load_router", lambda c, idx=None: own)
    cfg, port = _with_metrics(config)
    app = App(cfg, "127.0.0.1", free_port(), index_dir=index_dir)
    await app.start()
    await app.load()
    try:
        first, _ = await asyncio.to_thread(scrape, port)
        state = own.state
        own.swap(dataclasses.replace(state, index=dataclasses.replace(state.index, version="v2")))
        second, _ = await asyncio.to_thread(scrape, port)
    finally:
        await app.stop(grace=5)

    def indexes(samples: Samples) -> list[str]:
        return [dict(ls)["index_version"] for (n, ls), _ in samples.items() if n.endswith("_info")]

    assert indexes(first) == [state.index.version] != ["v2"]
    assert indexes(second) == ["v2"]


# --- --workers: the parent serves the sum -----------------------------------------------


def test_workers_metrics_are_the_sum_over_workers(index_dir: Path, tmp_path: Path) -> None:
    """Each worker has its own decision cache, so the same prompt over fresh connections
    runs the encoder once per worker: two encoder decisions mean both served calls."""
    port, metrics_port = free_port(), free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = _serve(
        ["--workers", "2", "--port", str(port), "--index", str(index_dir),
         "--metrics-port", str(metrics_port)],
        log,
    )  # fmt: skip
    try:
        wait_serving(target, timeout=120, proc=proc)
        tiers = tiers_until_each_worker_encoded(target)
        assert tiers.count(pb.TIER_ENCODER) == 2, tiers
        calls = len(tiers)
        for _ in range(200):  # workers write their counts every second
            samples, _ = scrape(metrics_port)
            done = total(samples, "semroute_decisions_total") == calls
            if done and total(samples, "semroute_processes") == 2:
                break
            time.sleep(0.1)
        assert total(samples, "semroute_processes") == 2
        assert total(samples, "semroute_decisions_total") == calls
        assert total(samples, "semroute_decisions_total", tier="encoder") == 2
        assert total(samples, "semroute_decisions_total", tier="cache") == calls - 2
        assert total(samples, "semroute_cache_hits_total", cache="wire") == calls - 2
        assert total(samples, "semroute_decision_latency_seconds_count") == calls
        versions = {dict(ls)["index_version"] for (n, ls) in samples if n.endswith("_info")}
        with grpc.insecure_channel(target) as ch:  # after the scrape: not in its counts
            d = router_pb2_grpc.RouterServiceStub(ch).Route(
                pb.RouteRequest(prompt=ENCODER_BOUND_PROMPT), timeout=30
            )
        assert versions == {d.index_version}
    finally:
        _stop(proc, log)
