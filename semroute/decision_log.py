"""A sampled, size-rotated JSON-lines record of decisions (config `decision_log`).

The event loop only samples (one `random()` compare) and, for a sampled
decision, puts the request and the reply on a bounded queue; a writer thread
decodes, formats and writes them. A full queue drops the decision and counts
it: a request never waits for the disk and memory stays bounded. A write
error is counted and logged, never raised into a request.

Each line records what `semroute replay` needs to re-decide the request (its
constraints, and the prompt only with `include_prompt`), what was decided
(route, model, fallbacks, scores, candidates with their estimated cost, tier,
reason) and by which versions, with its timing. Without the prompt a line
carries a keyed digest of the request (correlates repeats without revealing
the text) and the prompt's length, as log lines do (`pipeline.prompt_fields`).

Rotation renames the live file to `.1` (older ones shift up, the last one
dropped) before a line would take it past `max_bytes`; each batch of lines
goes out in one write of whole lines, so a rotated file is always whole lines
and a reader holding the old file keeps reading whole lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from random import random
from typing import Any

from semroute.config import Config, DecisionLogSpec, ServerSpec
from semroute.messages import as_decision, query_from_proto
from semroute.types import Preset, RouteQuery
from semroute.v1 import router_pb2 as pb

log = logging.getLogger("semroute.decision_log")

# Keys the request digest; set it (the same in every worker) so digests match across
# processes and restarts, otherwise each process draws its own.
KEY_ENV = "SEMROUTE_DECISION_LOG_KEY"
# Lines formatted per write (one write call each).
BATCH = 256
_STOP = object()


@dataclass
class Counts:
    """What the log did: decisions written, dropped (queue full / line over max_bytes),
    and failed (unreadable request or write error)."""

    written: int = 0
    dropped_full: int = 0
    dropped_oversize: int = 0
    errors: int = 0
    rotations: int = 0


class DecisionLog:
    def __init__(
        self, spec: DecisionLogSpec, path: Path, limits: ServerSpec, *, start: bool = True
    ) -> None:
        self.spec = spec
        self.path = Path(path)
        self.rate = spec.sample_rate
        self._limits = limits
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=spec.max_queue)
        key = os.environ.get(KEY_ENV, "").encode()
        self._key = hashlib.blake2b(key, digest_size=32).digest() if key else os.urandom(32)
        self.counts = Counts()
        self._file: Any = None
        self._size = 0
        self._thread = threading.Thread(target=self._run, name="semroute-decision-log", daemon=True)
        if start:
            self.start()

    @classmethod
    def from_config(cls, config: Config) -> DecisionLog | None:
        """The config's decision log, or None when `decision_log.path` is unset."""
        spec = config.decision_log
        if spec.path is None:
            return None
        # `{pid}` gives each of `--workers N` processes its own file (and its own rotation).
        path = Path(str(spec.path).replace("{pid}", str(os.getpid())))
        return cls(spec, config.resolve(path), config.server)

    # --- the event loop's side ----------------------------------------------------------

    def sampled(self) -> bool:
        """Whether to record this decision (`sample_rate` 1: all, 0: none)."""
        return random() < self.rate

    def record(self, request: pb.RouteRequest, reply: pb.RouteDecision | bytes) -> None:
        """Queue one decision for the writer; drops (and counts) it when the queue is full."""
        try:
            self._queue.put_nowait((time.time(), request, reply))
        except queue.Full:
            self.counts.dropped_full += 1

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 5.0) -> Counts:
        """Write what is queued (up to `timeout`), stop the writer, close the file."""
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=timeout)
            self._thread.join(timeout)
        fields = {"path": str(self.path), **vars(self.counts)}
        log.info("decision log closed", extra={"fields": fields})
        return self.counts

    # --- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(i is _STOP for i in items)
            lines = [line for i in items if i is not _STOP and (line := self._line(i)) is not None]
            try:
                self._write(lines)
            except OSError as e:
                self.counts.errors += len(lines)
                log.warning("decision log write failed", extra={"fields": {"error": str(e)}})
                self._close_file()
            if stop:
                self._close_file()
                return

    def _line(self, item: tuple[float, pb.RouteRequest, pb.RouteDecision | bytes]) -> bytes | None:
        ts, request, reply = item
        try:
            query = query_from_proto(request, self._limits)
            decision = as_decision(reply)
            record = decision_record(ts, query, decision, self._key, self.spec.include_prompt)
            return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        except Exception as e:  # never let one odd request stop the writer
            self.counts.errors += 1
            fields = {"error": type(e).__name__}  # its message may quote the prompt
            log.warning("decision log: unrecordable decision", extra={"fields": fields})
            return None

    def _write(self, lines: list[bytes]) -> None:
        """Append whole lines, rotating before a line would pass max_bytes."""
        limit = self.spec.max_bytes
        chunk: list[bytes] = []
        pending = 0
        for line in lines:
            if len(line) > limit:
                self.counts.dropped_oversize += 1
                continue
            if self._file is None:
                self._open()
            if self._size + pending + len(line) > limit:
                self._flush(chunk, pending)
                chunk, pending = [], 0
                self._rotate()
            chunk.append(line)
            pending += len(line)
        self._flush(chunk, pending)

    def _flush(self, chunk: list[bytes], size: int) -> None:
        if not chunk:
            return
        data = memoryview(b"".join(chunk))
        while data:
            data = data[self._file.write(data) :]
        self._size += size
        self.counts.written += len(chunk)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 (kept open across batches)
        self._size = self._file.seek(0, os.SEEK_END)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _rotate(self) -> None:
        """live → .1 → .2 … (.backups dropped), by renames; then a fresh live file."""
        self._close_file()
        n = self.spec.backups
        if n == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(n - 1, 0, -1):
                older = backup_path(self.path, i)
                if older.exists():
                    os.replace(older, backup_path(self.path, i + 1))
            os.replace(self.path, backup_path(self.path, 1))
        self.counts.rotations += 1
        self._open()


def backup_path(path: Path, i: int) -> Path:
    return path.with_name(f"{path.name}.{i}")


def request_digest(query: RouteQuery, key: bytes) -> str:
    """A keyed digest of the request (text and constraints, not its id): equal requests
    match within a key, and nobody without the key can test a guessed prompt."""
    h = hashlib.blake2b(digest_size=16, key=key)
    h.update(query.text.encode())
    h.update(b"\x00" + json.dumps(constraints(query), sort_keys=True).encode())
    return h.hexdigest()


def constraints(query: RouteQuery) -> dict[str, Any]:
    """Everything besides the text that a decision depends on (replay rebuilds the query)."""
    return {
        "tenant": query.tenant,
        "knob": query.quality_preference,
        "preset": query.preset.name.lower() if query.preset else None,
        "allowed_models": sorted(query.allowed_models),
        "excluded_models": sorted(query.excluded_models),
        "required_tags": sorted(query.required_tags),
        "max_cost_usd": query.max_cost_usd,
        "expected_output_tokens": query.expected_output_tokens,
    }


def query_from_record(record: dict[str, Any]) -> RouteQuery:
    """The request a line records (its prompt required), to decide it again."""
    c = record.get("constraints") or {}
    preset = c.get("preset")
    return RouteQuery(
        text=record["prompt"],
        request_id=str(record.get("request_id", "")),
        tenant=c.get("tenant") or "",
        allowed_models=frozenset(c.get("allowed_models") or ()),
        excluded_models=frozenset(c.get("excluded_models") or ()),
        required_tags=frozenset(c.get("required_tags") or ()),
        quality_preference=c.get("knob"),
        preset=Preset[preset.upper()] if preset else Preset.UNSPECIFIED,
        max_cost_usd=c.get("max_cost_usd"),
        expected_output_tokens=c.get("expected_output_tokens"),
    )


def decision_record(
    ts: float, query: RouteQuery, d: pb.RouteDecision, key: bytes, include_prompt: bool
) -> dict[str, Any]:
    """One line of the log."""
    record: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e3) % 1000:03d}Z",
        "request_id": d.request_id,
        "request_hash": request_digest(query, key),
        "prompt_chars": len(query.text),
    }
    if include_prompt:
        record["prompt"] = query.text
    record["constraints"] = constraints(query)
    record.update(
        route=d.route,
        model=d.model,
        provider=d.provider,
        fallbacks=list(d.fallbacks),
        confidence=round(d.confidence, 6),
        quality_bar=round(d.quality_bar, 6),
        tier=pb.Tier.Name(d.tier).removeprefix("TIER_").lower(),
        reason=pb.DecisionReason.Name(d.reason).removeprefix("DECISION_REASON_").lower(),
        rule=d.rule,
        matches=[[m.route, round(m.score, 6)] for m in d.matches],
        candidates=[
            {
                "model": c.model,
                "predicted_quality": round(c.predicted_quality, 6),
                "estimated_cost_usd": c.estimated_cost_usd,
                "eligible": c.eligible,
                "meets_bar": c.meets_bar,
            }
            for c in d.candidates
        ],
        versions={
            "index": d.index_version,
            "config": d.config_version,
            "classifier": d.classifier_version,
            "encoder": d.encoder_id,
        },
        timing_us={
            "total": d.timing.total_us,
            "rules": d.timing.rules_us,
            "encode": d.timing.encode_us,
            "search": d.timing.search_us,
            "policy": d.timing.policy_us,
        },
    )
    return record
