"""The load generator: a tiny bounded run against the echo server, and its parts on their own.

No timing thresholds: the machine is shared, only structure and invariants are checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("hdrh")

from benchmarks.loadgen import hist
from benchmarks.loadgen.runner import Scenario
from benchmarks.loadgen.servers import ServerHandle, parse_target, start_server, stop_server
from benchmarks.prompts import PromptMix, PromptPool, RequestFactory, chat_prompts

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def echo() -> Iterator[ServerHandle]:
    handle = start_server("echo", timeout=30)
    try:
        yield handle
    finally:
        stop_server(handle)


def _pool() -> PromptPool:
    """The built-in chat prompts only: unit tests must not depend on ../shared."""
    return PromptPool([], [], [], chat_prompts(), "", False)


def test_run_closed_open_sequential_against_echo(echo: ServerHandle, tmp_path: Path) -> None:
    common = {"warmup": 0.3, "duration": 1.0, "processes": 2, "knobs": "vary", "seed": 7}
    spec = {
        "defaults": common,
        "baseline": "closed",
        "scenarios": [
            {"name": "closed", "mode": "closed", "concurrency": 4, "requests": 400},
            {"name": "open", "mode": "open", "rate": 200, "requests": 400, "mix": "mix"},
            {"name": "seq", "mode": "sequential", "requests": 50, "mix": "hit"},
        ],
    }
    spec_path = tmp_path / "scenarios.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--target",
        echo.target,
        "--server-pid",
        str(echo.pid),
        "--scenarios",
        str(spec_path),
        "--out-dir",
        str(tmp_path),
        "--name",
        "t",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    files = list(tmp_path.glob("t-*.json"))
    assert len(files) == 1
    report = json.loads(files[0].read_text())
    assert report["baseline"] == "closed"
    by_name = {s["name"]: s for s in report["scenarios"]}
    assert set(by_name) == {"closed", "open", "seq"}
    for name, s in by_name.items():
        assert "failed" not in s, s
        assert 0 < s["requests"] <= 400, name
        assert s["ok"] == s["requests"] and s["error_total"] == 0, s["errors"]
        lat = s["latency_us"]
        assert lat["count"] == s["ok"]
        assert 0 <= lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"]
        assert lat["p99.9"] <= lat["max"]
        assert s["achieved_rps"] > 0
        assert s["client"]["cpu_per_call_us"] > 0
        assert s["server_cpu"] is not None
        assert s["server_rss"]["max_mb"] >= s["server_rss"]["start_mb"] > 0
        assert s["decisions"]["reason"] == {"DECISION_REASON_DEFAULT": 1.0}
        assert s["server_timing_us"]["total_us"]["count"] == s["ok"]
    assert by_name["seq"]["requests"] == 50 and by_name["seq"]["client"]["processes"] == 1
    assert by_name["open"]["offered_rps"] == 200 and by_name["open"]["client_lag_us"]
    assert by_name["seq"]["prompt_kinds"] == {"hit": 1.0}
    # The closed loop's 400 calls cost the echo server measurable CPU (ticks of 10 ms).
    assert by_name["closed"]["server_cpu"]["cpu_s"] > 0
    assert set(report["ratios"]) == {"closed", "open", "seq"}
    for name in ("open", "seq"):
        for key, field in (("achieved_rps", "achieved_rps"), ("p99", "latency_us")):
            a, base = by_name[name][field], by_name["closed"][field]
            if field == "latency_us":
                a, base = a["p99"], base["p99"]
            assert report["ratios"][name][key] == pytest.approx(round(a / base, 3), abs=1e-3)
    assert "achieved/s" in proc.stdout


def test_histogram_merge_equals_combined_recording() -> None:
    a, b, both = hist.new_histogram(), hist.new_histogram(), hist.new_histogram()
    for i in range(1, 5001):
        v = (i * 37) % 20_000 + 50
        hist.record(a if i % 3 else b, v)
        hist.record(both, v)
    hist.record(a, 10**12)  # clamped into range, not dropped
    hist.record(both, 10**12)
    merged = hist.merge([hist.encode(a), hist.encode(b)])
    assert hist.summarize(merged) == hist.summarize(both)
    assert merged.get_total_count() == 5001
    empty = hist.summarize(hist.merge([hist.encode(hist.new_histogram())]))
    assert empty["count"] == 0 and empty["p99"] == 0


def test_mix_repeat_share_and_determinism() -> None:
    n = 5000
    mix = PromptMix(_pool(), "mix", seed=3)
    items = [mix.next_item() for _ in range(n)]
    kinds = Counter(k for _, k in items)
    share = (kinds["repeat"] + kinds["paraphrase"]) / n
    assert 0.30 <= share <= 0.40, kinds
    assert kinds["repeat"] > 0 and kinds["paraphrase"] > 0
    seen: set[str] = set()
    for item, kind in items:
        text = item.text()
        if kind == "repeat":
            assert text in seen
        seen.add(text)
    again = PromptMix(_pool(), "mix", seed=3)
    assert [again.next_item() for _ in range(n)] == items
    other = PromptMix(_pool(), "mix", seed=4)
    assert [other.next_item() for _ in range(50)] != items[:50]


def test_unique_and_hit_mixes() -> None:
    pool = _pool()
    # Two processes' shards of `unique` never overlap (until a pool wraps).
    a = PromptMix(pool, "unique", seed=1, worker=0, n_workers=2)
    b = PromptMix(pool, "unique", seed=1, worker=1, n_workers=2)
    texts_a = [a.next_item()[0].text() for _ in range(200)]
    texts_b = [b.next_item()[0].text() for _ in range(200)]
    assert len(set(texts_a)) == 200 and not set(texts_a) & set(texts_b)
    hit = PromptMix(pool, "hit", seed=1, worker=1, n_workers=2, hit_set=8)
    hit0 = PromptMix(pool, "hit", seed=1, worker=0, n_workers=2, hit_set=8)
    drawn = {hit.next_item()[0].text() for _ in range(500)}
    assert len(drawn) <= 8
    assert drawn <= {hit0.next_item()[0].text() for _ in range(2000)}  # same set in every process


def test_knobs_follow_the_prompt() -> None:
    item, _ = PromptMix(_pool(), "unique", seed=2, knobs="none").next_item()
    bare = RequestFactory().build(item)
    assert not bare.tenant and not bare.HasField("quality_preference") and not bare.request_id
    mix = PromptMix(_pool(), "mix", seed=2, knobs="vary", tags=["region:eu"])
    f = RequestFactory(id_prefix="t-")
    items = [mix.next_item() for _ in range(600)]
    reqs = [f.build(item) for item, _ in items]
    assert all(r.tenant for r in reqs) and reqs[-1].request_id == "t-600"
    assert any(r.HasField("quality_preference") for r in reqs)
    assert all(0.0 <= r.quality_preference <= 1.0 for r in reqs)
    assert {t for r in reqs for t in r.required_tags} == {"region:eu"}
    # A repeat comes from the same caller: same text, same knobs (an exact cache can hit it).
    first: dict[str, object] = {}
    for (item, kind), req in zip(items, reqs, strict=True):
        req.request_id = ""
        key = item.text()
        if kind == "repeat":
            assert first[key] == req
        first.setdefault(key, req)


def test_only_loopback_targets() -> None:
    assert parse_target("localhost:50051") == "127.0.0.1:50051"
    for bad in ("10.0.0.1:50051", "example.com:443", "0.0.0.0:1", "127.0.0.1", "[::1]:5"):
        with pytest.raises(ValueError):
            parse_target(bad)
    with pytest.raises(ValueError):
        Scenario(target="192.168.1.2:50051").resolved()
    with pytest.raises(ValueError):
        Scenario(start_server="echo", duration=0).resolved()


def test_h2load_body_is_one_grpc_frame_of_the_request(tmp_path: Path) -> None:
    from benchmarks.loadgen.h2load import write_grpc_body
    from semroute.v1 import router_pb2 as pb

    req = pb.RouteRequest(prompt="summarise this meeting", request_id="r1")
    path = tmp_path / "body.bin"
    write_grpc_body(path, req)
    raw = path.read_bytes()
    assert raw[0] == 0  # not compressed
    assert int.from_bytes(raw[1:5], "big") == len(raw) - 5
    assert pb.RouteRequest.FromString(raw[5:]) == req


def test_h2load_outcomes_are_counted_from_the_servers_own_metrics() -> None:
    """h2load sees HTTP 200 for every gRPC answer, so goodput comes from /metrics:
    decisions within the deadline's bucket, the rest as late, refusals of every cause."""
    import time

    from prometheus_client import CollectorRegistry, generate_latest

    from benchmarks.loadgen.h2load import counts_from
    from semroute import metrics as m
    from semroute.v1 import router_pb2 as pb

    r = m.Recorder()
    d = pb.RouteDecision(route="math", model="m1", tier=pb.TIER_ENCODER)
    for age_s in (0.001, 0.002, 2.0):  # two in time, one answered after 1 s
        r.decided(d, time.perf_counter_ns() - int(age_s * 1e9))
    r.refused(m.SATURATED)
    r.refused(m.OVERLOAD)
    registry = CollectorRegistry()
    registry.register(m.SnapshotCollector(lambda: r.snapshot(queue_depth=0, versions={})))
    text = generate_latest(registry).decode()
    counts = counts_from(text, 1.0, cpu_s=3.5)
    assert (counts.ok_within, counts.ok_late, counts.refused, counts.cpu_s) == (2, 1, 2, 3.5)
    with pytest.raises(ValueError, match="bucket bound"):
        counts_from(text, 0.7, cpu_s=0.0)


def test_host_info_records_the_cpu_signature() -> None:
    from benchmarks.loadgen.cli import host_info
    from semroute.encoder.variants import KERNEL_FLAGS, cpu_signature

    host = host_info()
    assert host["cpu"] == cpu_signature()
    assert set(host["cpu"]["flags"]) <= set(KERNEL_FLAGS)
    assert host["cpu_model"] == host["cpu"]["model"]  # the older key, kept for old readers
    json.dumps(host)  # lands in the result JSON as is
