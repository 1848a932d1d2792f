"""h2load (Debian `nghttp2-client`) as a nearly free gRPC load generator.

A Python gRPC client costs about as much CPU per call as the server it measures
(../shared/FACTS.md: ~340 µs), so on a 2-core machine an open loop at 10x a server's
capacity spends half a core in the load generator, CPU the server under test loses.
h2load replays one gRPC-framed body from C for a few µs per call. It cannot read gRPC
statuses (every answer is HTTP 200, the status is in the trailers), so outcomes are
counted on the server, from its Prometheus `/metrics`.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.loadgen.procstat import tree_cpu_seconds
from semroute.v1 import router_pb2 as pb

ROUTE_PATH = "/semroute.v1.RouterService/Route"


def h2load_binary() -> str | None:
    return shutil.which("h2load")


def write_grpc_body(path: Path, request: pb.RouteRequest) -> None:
    """One length-prefixed gRPC message: flag byte 0, 4-byte big-endian length, payload."""
    payload = request.SerializeToString()
    path.write_bytes(b"\x00" + len(payload).to_bytes(4, "big") + payload)


@dataclass(frozen=True)
class ServerCounts:
    """What the server did: decisions answered within `within_s` (any tier), decisions
    answered later, refusals (every cause), and its CPU seconds."""

    ok_within: float
    ok_late: float
    refused: float
    cpu_s: float

    def minus(self, before: ServerCounts) -> ServerCounts:
        return ServerCounts(
            self.ok_within - before.ok_within,
            self.ok_late - before.ok_late,
            self.refused - before.refused,
            self.cpu_s - before.cpu_s,
        )


def server_counts(metrics_url: str, pid: int, within_s: float) -> ServerCounts:
    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        text = r.read().decode()
    return counts_from(text, within_s, tree_cpu_seconds(pid) or 0.0)


def counts_from(metrics_text: str, within_s: float, cpu_s: float) -> ServerCounts:
    """Counts from a semroute /metrics page; `within_s` must be one of the
    decision-latency histogram's bucket bounds."""
    within, total, refused, bounds = 0.0, 0.0, 0.0, set()
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "semroute_decision_latency_seconds_bucket":
                bound = float(sample.labels["le"])
                bounds.add(bound)
                within += sample.value if bound == within_s else 0.0
            elif sample.name == "semroute_decision_latency_seconds_count":
                total += sample.value
            elif sample.name == "semroute_refusals_total":
                refused += sample.value
    if within_s not in bounds:
        raise ValueError(f"{within_s} s is not a decision-latency bucket bound: {sorted(bounds)}")
    return ServerCounts(within, total - within, refused, cpu_s)


@dataclass(frozen=True)
class H2loadResult:
    sent: int
    seconds: float
    server: ServerCounts
    client_cpu_s: float
    summary: str  # h2load's own lines on requests and timing

    @property
    def goodput_rps(self) -> float:
        return self.server.ok_within / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        s = self.server
        return {
            "sent": self.sent,
            "seconds": round(self.seconds, 2),
            "goodput_rps": round(self.goodput_rps, 1),
            "answered_late": int(s.ok_late),
            "refused_rps": round(s.refused / self.seconds, 1),
            "server_cores": round(s.cpu_s / self.seconds, 2),
            "client_cores": round(self.client_cpu_s / self.seconds, 3),
            "h2load": self.summary,
        }


def run_h2load(
    target: str,
    body: Path,
    *,
    metrics_url: str,
    server_pid: int,
    streams: int,
    duration_s: float,
    warmup_s: float,
    deadline_s: float,
    rps: float | None = None,
    connections: int = 1,
) -> H2loadResult:
    """Drive `Route` with `body` for `warmup_s` + `duration_s`: a closed loop of
    `connections` x `streams` callers, or, with `rps`, an open loop at that total rate
    (h2load paces each connection; `streams` bounds what each has in flight). Every call
    carries `grpc-timeout`, so the server refuses what it cannot answer in time. The
    server is counted over the measured part only."""
    binary = h2load_binary()
    if binary is None:
        raise RuntimeError("h2load not found: apt install nghttp2-client")
    cmd = [
        binary, "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-H", f"grpc-timeout: {max(1, round(deadline_s * 1000))}m",
        "-c", str(connections), "-m", str(streams),
        "-D", str(max(1, round(duration_s))), "--warm-up-time", f"{max(1, round(warmup_s))}",
    ]  # fmt: skip
    if rps is not None:
        cmd += ["--rps", f"{max(1.0, rps / connections):.1f}"]
    cmd.append(f"http://{target}{ROUTE_PATH}")
    cpu0 = _children_cpu_s()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(max(1, round(warmup_s)))
        before, t0 = server_counts(metrics_url, server_pid, deadline_s), time.perf_counter()
        out, _ = proc.communicate(timeout=duration_s + warmup_s + 60)
        after, t1 = server_counts(metrics_url, server_pid, deadline_s), time.perf_counter()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"h2load exited {proc.returncode}: {out[-2000:]}")
    m = re.search(r"requests: (\d+) total", out)
    keep = ("finished in", "requests:", "time for request")
    summary = " | ".join(ln.strip() for ln in out.splitlines() if ln.startswith(keep))
    return H2loadResult(
        sent=int(m.group(1)) if m else 0,
        seconds=t1 - t0,
        server=after.minus(before),
        client_cpu_s=_children_cpu_s() - cpu0,
        summary=summary,
    )


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
