"""gRPC load generator for semroute's RouterService (see benchmarks/README.md).

Open loop (fixed offered rate, latency from the scheduled send time), closed
loop (fixed concurrency) and sequential modes, several client processes with
merged HDR histograms, client and server CPU per call, server RSS over the run.
"""

from benchmarks.loadgen.runner import Scenario, run_scenario

__all__ = ["Scenario", "run_scenario"]
