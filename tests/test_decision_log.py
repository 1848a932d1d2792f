"""The decision log (sampled, rotated JSONL written by a thread) and `semroute replay`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from semroute.admin.bundles import LoadContext, load_path
from semroute.cli import main
from semroute.config import Config, DecisionLogSpec, ServerSpec
from semroute.decision_log import DecisionLog, backup_path
from semroute.replay import ReplayReport, read_records, replay
from semroute.router import Router
from semroute.v1 import router_pb2 as pb

from .test_admin_support import EXPECTED, Bundles, bundles, running_app, stubs

__all__ = ["bundles"]

SECRET = "a zebracorn asks: what are your opening hours?"


def _reply(i: int) -> pb.RouteDecision:
    return pb.RouteDecision(
        request_id=f"r{i:04d}",
        model="mistral-small-3.2",
        route="faq_lookup",
        tier=pb.TIER_ENCODER,
        reason=pb.DECISION_REASON_CLASSIFIER,
        candidates=[pb.Candidate(model="mistral-small-3.2", estimated_cost_usd=0.0001)],
        index_version="idx-1",
        config_version="cfg-1",
    )


def _log(tmp_path: Path, *, start: bool = True, **spec: Any) -> DecisionLog:
    return DecisionLog(DecisionLogSpec(**spec), tmp_path / "d.jsonl", ServerSpec(), start=start)


def _lines(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.splitlines()]


@pytest.mark.parametrize("include_prompt", [False, True])
def test_lines_are_whole_records_and_the_prompt_only_when_asked(
    tmp_path: Path, include_prompt: bool
) -> None:
    dlog = _log(tmp_path, include_prompt=include_prompt)
    request = pb.RouteRequest(
        prompt=SECRET, tenant="acme", allowed_models=["mistral-small-3.2"], quality_preference=0.3
    )
    for i in range(5):
        dlog.record(request, _reply(i) if i % 2 else _reply(i).SerializeToString())
    assert dlog.close().written == 5
    raw = (tmp_path / "d.jsonl").read_text()
    assert ("zebracorn" in raw) == include_prompt
    lines = _lines(tmp_path / "d.jsonl")
    assert [x["request_id"] for x in lines] == [f"r{i:04d}" for i in range(5)]
    line = lines[0]
    assert ("prompt" in line) == include_prompt
    assert line["prompt_chars"] == len(SECRET)
    assert len({x["request_hash"] for x in lines}) == 1  # the same request, the same digest
    assert line["constraints"]["tenant"] == "acme"
    assert line["constraints"]["knob"] == pytest.approx(0.3)
    assert line["constraints"]["allowed_models"] == ["mistral-small-3.2"]
    assert (line["route"], line["model"], line["tier"], line["reason"]) == (
        "faq_lookup",
        "mistral-small-3.2",
        "encoder",
        "classifier",
    )
    assert line["versions"]["index"] == "idx-1"
    assert line["candidates"][0]["estimated_cost_usd"] == pytest.approx(0.0001)
    assert set(line["timing_us"]) >= {"total", "encode"}


def test_rotation_keeps_max_bytes_and_backups(tmp_path: Path) -> None:
    dlog = _log(tmp_path, max_bytes=2048, backups=2)
    request = pb.RouteRequest(prompt="what are your opening hours?")
    n = 200
    for i in range(n):
        dlog.record(request, _reply(i))
    counts = dlog.close()
    assert counts.written == n and counts.rotations > 3
    live = tmp_path / "d.jsonl"
    files = [backup_path(live, 2), backup_path(live, 1), live]
    assert not backup_path(live, 3).exists()
    kept: list[str] = []
    for f in files:
        assert 0 < f.stat().st_size <= 2048
        kept += [x["request_id"] for x in _lines(f)]
    # The newest lines, in order, with none lost between the kept files.
    assert kept == [f"r{i:04d}" for i in range(n - len(kept), n)]


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    dlog = _log(tmp_path, max_queue=3, start=False)  # the writer is not draining yet
    request = pb.RouteRequest(prompt="hi there!")
    for i in range(10):
        dlog.record(request, _reply(i))  # returns at once: never waits for the writer
    assert dlog.counts.dropped_full == 7
    dlog.start()
    counts = dlog.close()
    assert (counts.written, counts.dropped_full) == (3, 7)
    assert len(_lines(tmp_path / "d.jsonl")) == 3


def _with_log(config: Config, path: Path, rate: float, include_prompt: bool = True) -> Config:
    spec = DecisionLogSpec(path=path, sample_rate=rate, include_prompt=include_prompt)
    return config.model_copy(update={"decision_log": spec})


async def _serve_prompts(config: Config, encoder: Any, bundles: Bundles, repeats: int) -> None:
    """Every EXPECTED prompt through a real in-process server on bundle A, then repeats."""
    async with running_app(config, encoder, bundles.a) as (app, target):
        async with stubs(target) as (_, rs):
            for r in range(1 + repeats):
                for i, p in enumerate(EXPECTED):
                    await rs.Route(pb.RouteRequest(prompt=p, request_id=f"q{r}-{i}"))
        assert app.pipeline.wire_hits == repeats * len(EXPECTED)


@pytest.mark.parametrize("rate", [0.0, 1.0])
async def test_sampling_through_the_server(
    tmp_path: Path, config: Config, encoder: Any, bundles: Bundles, rate: float
) -> None:
    path = tmp_path / "d.jsonl"
    await _serve_prompts(_with_log(config, path, rate), encoder, bundles, repeats=1)
    if rate == 0.0:
        assert not path.exists() or path.stat().st_size == 0
        return
    lines = _lines(path)
    assert len(lines) == 2 * len(EXPECTED)  # cache hits (the repeats) included
    tiers = [x["tier"] for x in lines]
    assert tiers.count("cache") >= len(EXPECTED)
    for x in lines:
        route, model_a, _ = EXPECTED[x["prompt"]]
        assert (x["route"], x["model"]) == (route, model_a)
        assert x["versions"]["index"] == bundles.version_a


def _router(encoder: Any, config: Config, bundle: Path, tmp: Path) -> Router:
    ctx = LoadContext(
        encoder=encoder, static_encoder=None, base_config=config, routing_config=config
    )
    loaded, _ = load_path(bundle, ctx, tmp, config.admin.max_archive_bytes)
    return Router(encoder, loaded.state)


async def test_replay_reports_what_a_candidate_changes(
    tmp_path: Path, config: Config, encoder: Any, bundles: Bundles
) -> None:
    path = tmp_path / "d.jsonl"
    await _serve_prompts(_with_log(config, path, 1.0), encoder, bundles, repeats=1)
    n = 2 * len(EXPECTED)

    same = ReplayReport()
    replay(read_records([path], same), _router(encoder, config, bundles.a, tmp_path), same)
    assert (same.replayed, same.skipped_no_prompt, same.refused) == (n, 0, 0)
    assert (same.model_changed, same.route_changed) == (0, 0)
    assert same.cost_before == pytest.approx(same.cost_after)

    # B (as its .tar.gz) serves translation with gpt-5.5 only.
    other = ReplayReport()
    router_b = _router(encoder, config, bundles.b_archive, tmp_path)
    replay(read_records([path], other), router_b, other)
    changed = {p: (a, b) for p, (_, a, b) in EXPECTED.items() if a != b}
    assert changed  # the fixture's premise
    assert other.model_changed == 2 * len(changed) and other.route_changed == 0
    assert dict(other.model_changes) == {
        pair: 2 * list(changed.values()).count(pair) for pair in set(changed.values())
    }
    assert other.candidate_version == bundles.version_b
    assert other.cost_after > other.cost_before  # gpt-5.5 costs more than gemini flash


async def test_replay_cli_json_and_a_log_without_prompts(
    tmp_path: Path,
    config: Config,
    encoder: Any,
    bundles: Bundles,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with_prompts, without = tmp_path / "with.jsonl", tmp_path / "without.jsonl"
    await _serve_prompts(_with_log(config, with_prompts, 1.0), encoder, bundles, repeats=0)
    await _serve_prompts(_with_log(config, without, 1.0, False), encoder, bundles, repeats=0)
    n = len(EXPECTED)

    assert main(["replay", str(with_prompts), "--bundle", str(bundles.b), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    changed = sum(a != b for _, a, b in EXPECTED.values())
    assert (report["replayed"], report["model_changed"]) == (n, changed)
    assert report["model_changed_share"] == pytest.approx(changed / n)
    assert report["mean_cost_after_usd"] > report["mean_cost_before_usd"]

    assert main(["replay", str(without), "--bundle", str(bundles.a)]) == 1
    out = capsys.readouterr().out
    assert f"{n} skipped (no prompt)" in out and "include_prompt" in out
    assert "nothing to replay" in out


def test_replay_refuses_a_missing_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "d.jsonl"
    log.write_text("")
    with tempfile.TemporaryDirectory() as empty:
        assert main(["replay", str(log), "--bundle", str(Path(empty) / "nope")]) == 2
    assert "no such bundle" in capsys.readouterr().err


def test_one_file_per_process_with_pid_in_the_path(tmp_path: Path, config: Config) -> None:
    import os

    assert DecisionLog.from_config(config) is None  # the default config: off
    cfg = _with_log(config, tmp_path / "d-{pid}.jsonl", 1.0)
    dlog = DecisionLog.from_config(cfg)
    assert dlog is not None
    try:
        assert dlog.path == tmp_path / f"d-{os.getpid()}.jsonl"
    finally:
        dlog.close()
