"""Command line: one scenario from flags, or several (``--compare``, ``--scenarios FILE``)
reported against a baseline measured in the same run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from benchmarks.loadgen.report import format_report, ratios
from benchmarks.loadgen.runner import MODES, SERVER_KINDS, Scenario, run_scenario
from benchmarks.loadgen.senders import RPCS
from benchmarks.prompts import KNOBS, MIXES

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"

EPILOG = """\
examples:
  # trivial-RPC ceiling: start the echo server, 2 client processes, 32 in flight
  python -m benchmarks.loadgen --start-server echo --mode closed --concurrency 32 --processes 2

  # an already-running server, open loop at 800 requests/s, production-like prompts
  python -m benchmarks.loadgen --target 127.0.0.1:50051 --server-pid 12345 \\
      --mode open --rate 800 --duration 30 --mix mix

  # p50/p99 over 1,000 sequential Route calls
  python -m benchmarks.loadgen --start-server semroute --server-config configs/default.yaml \\
      --mode sequential --requests 1000

  # echo ceiling, then the real server, same load; ratios against the echo run
  python -m benchmarks.loadgen --compare echo,semroute --server-config configs/default.yaml

Only 127.0.0.1 targets are accepted. Results: benchmarks/results/<name>-<timestamp>.json.
"""


def build_parser() -> argparse.ArgumentParser:
    # Load options default to SUPPRESS, so only flags given on the command line
    # override a scenario file's defaults (Scenario holds the real defaults).
    S = argparse.SUPPRESS
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.loadgen",
        description="Load generator for semroute's RouterService.Route (gRPC, 127.0.0.1 only).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = ap.add_argument_group("server under test")
    g.add_argument("--target", default=S, help="HOST:PORT of a running server (127.0.0.1 only)")
    g.add_argument(
        "--start-server", choices=SERVER_KINDS, default=S, help="start this server for the run"
    )
    g.add_argument(
        "--server-config",
        default=S,
        help="--config for --start-server semroute (default: the server's)",
    )
    g.add_argument("--server-workers", type=int, default=S, help="server --workers (default 1)")
    g.add_argument(
        "--server-cmd",
        default=S,
        help="custom start command; placeholders {host} {port} {config} {workers} {python}",
    )
    g.add_argument(
        "--server-pid", type=int, default=S, help="PID of a running server: measure its CPU/RSS"
    )
    g.add_argument("--server-start-timeout", type=float, default=S, help="seconds (default 180)")

    g = ap.add_argument_group("load")
    g.add_argument("--mode", choices=MODES, default=S, help="default closed")
    g.add_argument("--rate", type=float, default=S, help="open loop: offered requests/s")
    g.add_argument(
        "--arrival", choices=("uniform", "poisson"), default=S, help="open loop schedule"
    )
    g.add_argument("--concurrency", type=int, default=S, help="closed loop: calls in flight (32)")
    g.add_argument("--processes", type=int, default=S, help="client processes (default 2)")
    g.add_argument("--duration", type=float, default=S, help="measured seconds (default 10)")
    g.add_argument("--warmup", type=float, default=S, help="unmeasured seconds first (default 2)")
    g.add_argument(
        "--requests", type=int, default=S, help="cap on measured requests (1e6; sequential 1000)"
    )
    g.add_argument("--timeout", type=float, default=S, help="per-call deadline, s (default 5)")
    g.add_argument(
        "--max-inflight", type=int, default=S, help="open loop: per-process in-flight cap"
    )
    g.add_argument("--no-uvloop", dest="uvloop", action="store_false", default=S)
    g.add_argument(
        "--rpc",
        choices=RPCS,
        default=S,
        help="route (unary, default), batch (RouteBatch of --batch-size) or stream (RouteStream)",
    )
    g.add_argument("--batch-size", type=int, default=S, help="--rpc batch: items per call (16)")
    g.add_argument(
        "--pushback",
        choices=("honour", "ignore"),
        default=S,
        help="closed loop after a refusal: wait the server's grpc-retry-pushback-ms (default) "
        "or retry after 1 ms",
    )

    g = ap.add_argument_group("requests")
    g.add_argument("--mix", choices=MIXES, default=S, help="prompt mix (default unique)")
    g.add_argument("--seed", type=int, default=S, help="prompt/knob RNG seed (default 0)")
    g.add_argument("--hit-set", type=int, default=S, help="hit mix: distinct prompts (16)")
    g.add_argument("--repeat-share", type=float, default=S, help="mix: repeat share (0.35)")
    g.add_argument("--knobs", choices=KNOBS, default=S, help="per-request knobs (default vary)")
    g.add_argument(
        "--tags",
        type=lambda s: [t for t in s.split(",") if t],
        default=S,
        help="comma-separated required_tags drawn for ~20%% of requests (default none)",
    )
    g.add_argument(
        "--data-dir",
        default=S,
        help="RouteLLM data (default $SEMROUTE_SHARED_DATA[/routellm] or ../shared/data/routellm)",
    )

    g = ap.add_argument_group("scenarios and output")
    g.add_argument(
        "--compare",
        help="comma-separated servers/targets run with the same load, first is the baseline: "
        "echo, semroute or 127.0.0.1:PORT",
    )
    g.add_argument(
        "--scenarios",
        help="JSON/YAML file: {defaults: {...}, scenarios: [{name, ...}, ...], baseline: NAME}",
    )
    g.add_argument("--name", default=S, help="run name (file name prefix)")
    g.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    g.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    g.add_argument("--json", action="store_true", help="also print the result JSON to stdout")
    g.add_argument(
        "--write-h2load-body",
        metavar="PATH",
        help="write the mix's first request as a gRPC-framed body for h2load --data, and exit",
    )
    return ap


def write_h2load_body(path: str, sc: Scenario) -> str:
    """One length-prefixed gRPC message (flag byte, 4-byte big-endian length, payload).

    h2load (Debian nghttp2-client) replays it almost for free, so the server's
    cost per call can be measured without a Python client sharing the cores.
    """
    from benchmarks.loadgen.h2load import write_grpc_body
    from benchmarks.prompts import PromptMix, RequestFactory, load_pool

    mix = PromptMix(load_pool(sc.data_dir), sc.mix, sc.seed, knobs=sc.knobs, tags=sc.tags)
    write_grpc_body(Path(path), RequestFactory().build(mix.next_item()[0]))
    target = sc.target or "127.0.0.1:50051"
    return (
        f"h2load -n 100000 -c 4 -m 32 -d {path} -H 'content-type: application/grpc' "
        f"-H 'te: trailers' http://{target}/semroute.v1.RouterService/Route"
    )


def _load_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if isinstance(data, list):
        data = {"scenarios": data}
    if not isinstance(data, dict) or not data.get("scenarios"):
        raise ValueError(f"{path}: expected a 'scenarios' list")
    return data


def plan(args: argparse.Namespace) -> tuple[str, list[Scenario], str]:
    """The scenarios to run, the run's name and the baseline scenario's name.

    Precedence: a scenario's own keys > command-line flags > the file's defaults.
    """
    flags = {
        k: v
        for k, v in vars(args).items()
        if k not in ("compare", "scenarios", "out_dir", "no_save", "json", "write_h2load_body")
    }
    run_name = str(flags.pop("name", ""))
    if args.scenarios:
        data = _load_file(args.scenarios)
        base = {**data.get("defaults", {}), **flags}
        scs = [Scenario.from_dict({**base, **entry}) for entry in data["scenarios"]]
        baseline = data.get("baseline") or next((s.name for s in scs if s.baseline), "")
        run_name = run_name or Path(args.scenarios).stem
    elif args.compare:
        scs = []
        for item in (x.strip() for x in args.compare.split(",") if x.strip()):
            entry = dict(flags, name=item)
            entry.pop("target", None)
            entry.pop("start_server", None)
            if item in SERVER_KINDS:
                entry["start_server"] = item
            else:
                entry["target"] = item
            if item != "semroute":  # how to start semroute is not how to start the others
                for key in ("server_cmd", "server_config"):
                    entry.pop(key, None)
            scs.append(Scenario.from_dict(entry))
        baseline = ""
        run_name = run_name or "compare-" + "-vs-".join(s.name for s in scs).replace(":", "_")
    else:
        scs = [Scenario.from_dict(flags)]
        baseline = ""
    resolved = [s.resolved() for s in scs]
    names = [s.name for s in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique: {names}")
    baseline = baseline or names[0]
    if baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not a scenario name")
    if not run_name:
        s = resolved[0]
        run_name = f"{s.name}-{s.mode}-{s.mix}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_name)
    return safe, resolved, baseline


def host_info() -> dict[str, Any]:
    import grpc

    from semroute.encoder.variants import cpu_signature  # onnxruntime: only when a run records

    cpu = cpu_signature()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu["model"],  # kept for older readers; "cpu" has it with the flags
        "cpu": cpu,
        "loadavg_at_start": load,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.write_h2load_body:
        flags = {k: v for k, v in vars(args).items() if k in {f.name for f in fields(Scenario)}}
        print(write_h2load_body(args.write_h2load_body, Scenario.from_dict(flags)))
        return 0
    try:
        name, scenarios, baseline = plan(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%dT%H%M%S")
    report: dict[str, Any] = {
        "tool": "semroute-loadgen",
        "schema": 1,
        "name": name,
        "timestamp": stamp,
        "host": host_info(),
        "baseline": baseline,
        "scenarios": [],
    }
    failed = 0
    for sc in scenarios:
        print(f"--> {sc.name}: {sc.mode} {sc.mix}", file=sys.stderr, flush=True)
        try:
            report["scenarios"].append(run_scenario(sc))
        except (RuntimeError, TimeoutError, OSError, ValueError) as e:
            failed += 1
            print(f"scenario {sc.name} failed: {e}", file=sys.stderr)
            report["scenarios"].append({"name": sc.name, "failed": str(e)})
    report["ratios"] = ratios(report["scenarios"], baseline)
    print(format_report(report))
    if args.json:
        print(json.dumps(report, indent=2))
    if not args.no_save:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path = args.out_dir / f"{name}-{stamp}.json"
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"results: {path}")
    return 1 if failed else 0
