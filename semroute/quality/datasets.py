"""Labelled routing data: prompts with a quality score per model, and model prices.

Readers (all take the files as they are):

* a CSV with a ``prompt`` column and one boolean (True/False, 1/0, yes/no) or numeric column per
  model, possibly beside other columns (RouteLLM's MMLU response files);
* a directory of such CSVs (concatenated; each file stem is kept as the prompt's ``source``);
* JSONL with ``{"prompt": ..., "scores": {model: score}}`` per line;
* an MT-Bench directory (``question.jsonl`` + ``judgements.jsonl``, FastChat format): routes on
  turn 1, the label is the model's mean judge score over the question's turns.

Scores are normalised to [0, 1]: 0/1 correctness stays as it is, 1-10 judge scores map through
``(s - 1) / 9``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Dataset",
    "grouped_folds",
    "load_dataset",
    "load_exclusions",
    "match_names",
    "parse_prices",
    "prices_from_config",
]

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


@dataclass
class Dataset:
    """Prompts × models quality matrix (scores in [0, 1])."""

    prompts: list[str]
    models: list[str]
    scores: np.ndarray  # (n, m) float32 in [0, 1]
    sources: list[str] = field(default_factory=list)
    scale: str = "unit"  # "unit" (0/1 or [0,1]) or "judge10" (1-10)

    def __post_init__(self) -> None:
        if not self.sources:
            self.sources = [""] * len(self.prompts)
        if self.scores.shape != (len(self.prompts), len(self.models)):
            raise ValueError(
                f"scores shape {self.scores.shape} != ({len(self.prompts)}, {len(self.models)})"
            )

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, idx: np.ndarray | Sequence[int]) -> Dataset:
        ix = np.asarray(idx, dtype=np.int64)
        return Dataset(
            prompts=[self.prompts[i] for i in ix],
            models=list(self.models),
            scores=self.scores[ix],
            sources=[self.sources[i] for i in ix],
            scale=self.scale,
        )

    def select_models(self, names: Sequence[str]) -> Dataset:
        cols = [self.models.index(n) for n in match_names(names, self.models)]
        return Dataset(
            prompts=list(self.prompts),
            models=[self.models[c] for c in cols],
            scores=self.scores[:, cols],
            sources=list(self.sources),
            scale=self.scale,
        )

    def exclude(self, prompts: Iterable[str]) -> tuple[Dataset, int]:
        """Drop every copy of the given prompts (compared after stripping whitespace)."""
        drop = {p.strip() for p in prompts}
        keep = [i for i, p in enumerate(self.prompts) if p.strip() not in drop]
        return self.subset(keep), len(self.prompts) - len(keep)

    def fingerprint(self) -> str:
        """sha256 over the prompts (in order): the key of their embedding cache."""
        return prompts_sha256(self.prompts)


def prompts_sha256(prompts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        b = p.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def match_names(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """Resolve each wanted name against the available ones: an exact match first, then a
    unique case-insensitive substring (so ``gpt-4`` finds ``gpt-4-1106-preview``)."""
    out: list[str] = []
    for w in wanted:
        w = w.strip()
        if w in available:
            out.append(w)
            continue
        hits = [a for a in available if w.lower() in a.lower()]
        if len(hits) != 1:
            why = "no column matches" if not hits else f"ambiguous ({', '.join(hits)})"
            raise ValueError(f"model {w!r}: {why}; available: {', '.join(available)}")
        out.append(hits[0])
    if len(set(out)) != len(out):
        raise ValueError(f"models resolve to duplicate columns: {out}")
    return out


def _parse_score(v: Any) -> float:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    if v is None:
        return math.nan
    s = str(v).strip().lower()
    if s in _TRUE:
        return 1.0
    if s in _FALSE:
        return 0.0
    if s in {"", "nan", "none", "null", "na"}:
        return math.nan
    return float(s)


def normalise_scores(raw: np.ndarray, scale: str = "auto") -> tuple[np.ndarray, str]:
    """Map raw scores to [0, 1]. ``scale``: ``auto``, ``unit`` (already in [0, 1]) or
    ``judge10`` (1-10 judge scores -> (s - 1) / 9)."""
    finite = raw[np.isfinite(raw)]
    if scale == "auto":
        if finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0):
            scale = "unit"
        elif finite.min() >= 0.0 and finite.max() <= 10.0:
            scale = "judge10"
        else:
            raise ValueError(
                f"scores span [{finite.min()}, {finite.max()}]: pass --score-scale explicitly"
            )
    if scale == "unit":
        out = raw
    elif scale == "judge10":
        out = (raw - 1.0) / 9.0
    else:
        raise ValueError(f"unknown score scale {scale!r}")
    return np.clip(out, 0.0, 1.0).astype(np.float32), scale


def _finish(
    prompts: list[str],
    models: list[str],
    raw: np.ndarray,
    sources: list[str],
    scale: str,
) -> Dataset:
    ok = np.all(np.isfinite(raw), axis=1) if raw.size else np.ones(len(prompts), bool)
    if not ok.all():
        print(f"note: dropped {int((~ok).sum())} rows with a missing score", file=sys.stderr)
        prompts = [p for p, k in zip(prompts, ok, strict=True) if k]
        sources = [s for s, k in zip(sources, ok, strict=True) if k]
        raw = raw[ok]
    scores, used = normalise_scores(raw, scale)
    return Dataset(prompts=prompts, models=models, scores=scores, sources=sources, scale=used)


def _read_csv_rows(path: Path, prompt_column: str) -> tuple[list[str], list[dict[str, str]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        if prompt_column not in header:
            raise ValueError(f"{path}: no {prompt_column!r} column (columns: {header})")
        return header, list(reader)


def _score_columns(header: list[str], rows: list[dict[str, str]], prompt_column: str) -> list[str]:
    """Columns other than the prompt whose every value parses as a boolean or a number."""
    cols = []
    for c in header:
        if c == prompt_column:
            continue
        try:
            vals = [_parse_score(r[c]) for r in rows[:200]]
        except (TypeError, ValueError):
            continue
        if vals and any(np.isfinite(vals)):
            cols.append(c)
    return cols


def load_csv(
    paths: Sequence[Path],
    models: Sequence[str] | None = None,
    prompt_column: str = "prompt",
    scale: str = "auto",
) -> Dataset:
    prompts: list[str] = []
    sources: list[str] = []
    blocks: list[np.ndarray] = []
    chosen: list[str] | None = None
    for path in paths:
        header, rows = _read_csv_rows(path, prompt_column)
        available = _score_columns(header, rows, prompt_column)
        cols = match_names(models, available) if models else available
        if chosen is None:
            chosen = cols
        elif cols != chosen:
            raise ValueError(f"{path}: score columns {cols} differ from {chosen}")
        raw = np.array([[_parse_score(r[c]) for c in cols] for r in rows], dtype=np.float64)
        blocks.append(raw.reshape(len(rows), len(cols)))
        prompts += [r[prompt_column] for r in rows]
        sources += [path.stem] * len(rows)
    if chosen is None:
        raise ValueError("no CSV files given")
    raw_all = np.concatenate(blocks) if blocks else np.zeros((0, len(chosen)))
    return _finish(prompts, chosen, raw_all, sources, scale)


def load_jsonl(
    path: Path,
    models: Sequence[str] | None = None,
    prompt_key: str = "prompt",
    scale: str = "auto",
) -> Dataset:
    records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    if not records:
        raise ValueError(f"{path}: empty")
    for i, r in enumerate(records):
        if prompt_key not in r or not isinstance(r.get("scores"), dict):
            raise ValueError(f"{path}:{i + 1}: need {prompt_key!r} and a 'scores' object")
    names: list[str] = []
    for r in records:
        for k in r["scores"]:
            if k not in names:
                names.append(k)
    chosen = match_names(models, names) if models else names
    raw = np.array(
        [[_parse_score(r["scores"].get(m)) for m in chosen] for r in records], dtype=np.float64
    )
    return _finish(
        [str(r[prompt_key]) for r in records],
        chosen,
        raw,
        [str(r.get("source", r.get("category", ""))) for r in records],
        scale,
    )


def load_mt_bench(
    directory: Path,
    models: Sequence[str] | None = None,
    turns: str = "all",
    scale: str = "auto",
) -> Dataset:
    """FastChat MT-Bench layout: route on turn 1; label = mean judge score over ``turns``
    (``all`` or ``1``) for each model that answered the question."""
    questions = [
        json.loads(x)
        for x in (directory / "question.jsonl").read_text(encoding="utf-8").splitlines()
        if x.strip()
    ]
    judgements = [
        json.loads(x)
        for x in (directory / "judgements.jsonl").read_text(encoding="utf-8").splitlines()
        if x.strip()
    ]
    names: list[str] = []
    for j in judgements:
        if j["model"] not in names:
            names.append(j["model"])
    chosen = match_names(models, names) if models else names
    acc: dict[tuple[int, str], list[float]] = {}
    for j in judgements:
        if turns != "all" and int(j.get("turn", 1)) != int(turns):
            continue
        if j["model"] in chosen and float(j["score"]) >= 0:  # -1 marks a failed judgement
            acc.setdefault((int(j["question_id"]), j["model"]), []).append(float(j["score"]))
    prompts, sources, raw = [], [], []
    for q in questions:
        qid = int(q["question_id"])
        prompts.append(str(q["turns"][0]))
        sources.append(str(q.get("category", "")))
        raw.append([float(np.mean(acc[(qid, m)])) if (qid, m) in acc else math.nan for m in chosen])
    return _finish(prompts, chosen, np.array(raw, dtype=np.float64), sources, scale)


def load_dataset(
    path: str | Path,
    models: Sequence[str] | None = None,
    *,
    prompt_column: str = "prompt",
    scale: str = "auto",
    exclude: Sequence[str | Path] = (),
    mt_bench_turns: str = "all",
) -> Dataset:
    """Load a labelled set from a CSV, a directory of CSVs, JSONL or an MT-Bench directory,
    keep the requested models (in the given order) and drop excluded prompts."""
    p = Path(path)
    if p.is_dir():
        if (p / "question.jsonl").exists() and (p / "judgements.jsonl").exists():
            ds = load_mt_bench(p, models, turns=mt_bench_turns, scale=scale)
        else:
            files = sorted(p.glob("*.csv")) or sorted(p.glob("*/*.csv"))
            if not files:
                raise ValueError(f"{p}: no CSV files and not an MT-Bench directory")
            ds = load_csv(files, models, prompt_column, scale)
    elif p.suffix.lower() in {".jsonl", ".ndjson"}:
        ds = load_jsonl(p, models, prompt_column, scale)
    elif p.suffix.lower() in {".csv", ".tsv"}:
        ds = load_csv([p], models, prompt_column, scale)
    else:
        raise ValueError(f"{p}: expected .csv, .jsonl or a directory")
    dropped = 0
    for ex in exclude:
        ds, d = ds.exclude(load_exclusions(ex))
        dropped += d
    if dropped:
        print(f"note: excluded {dropped} prompts", file=sys.stderr)
    return ds


def load_exclusions(path: str | Path) -> list[str]:
    """Prompts to drop: JSONL with ``eval_prompt`` (RouteLLM's contamination lists) or
    ``prompt`` per line, a JSON string per line, or plain text with one prompt per line."""
    out: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            out.append(line)
            continue
        if isinstance(obj, str):
            out.append(obj)
        elif isinstance(obj, dict):
            for key in ("eval_prompt", "prompt", "text"):
                if key in obj:
                    out.append(str(obj[key]))
                    break
            else:
                raise ValueError(f"{path}: no eval_prompt/prompt key in {sorted(obj)}")
        else:
            out.append(line)
    return out


def parse_prices(items: Sequence[str]) -> dict[str, float]:
    """``["MODEL=USD_PER_MTOK", ...]`` -> {model: price} (split on the last ``=``)."""
    out: dict[str, float] = {}
    for it in items:
        name, sep, val = it.rpartition("=")
        if not sep or not name:
            raise ValueError(f"--price {it!r}: expected MODEL=USD_PER_MTOK")
        out[name.strip()] = float(val)
    return out


def prices_from_config(path: str | Path) -> dict[str, float]:
    """Model prices from a YAML config's model pool. Accepts ``models:`` (or ``pool:``) as a list
    of ``{name, price_per_mtok | usd_per_mtok | price | input_price_per_mtok}`` or a mapping
    ``name -> price`` / ``name -> {...}``."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text()) or {}
    pool = doc.get("models", doc.get("pool", doc.get("model_pool", [])))
    keys = ("price_per_mtok", "usd_per_mtok", "price", "input_price_per_mtok", "cost_per_mtok")

    def price_of(entry: Any) -> float | None:
        if isinstance(entry, (int, float)):
            return float(entry)
        if isinstance(entry, dict):
            for k in keys:
                if k in entry:
                    return float(entry[k])
        return None

    out: dict[str, float] = {}
    if isinstance(pool, dict):
        for name, entry in pool.items():
            v = price_of(entry)
            if v is not None:
                out[str(name)] = v
    elif isinstance(pool, list):
        for entry in pool:
            if isinstance(entry, dict) and ("name" in entry or "id" in entry):
                v = price_of(entry)
                if v is not None:
                    out[str(entry.get("name", entry.get("id")))] = v
    return out


def resolve_prices(prices: dict[str, float], models: Sequence[str]) -> dict[str, float]:
    """Map price keys (exact or unique substring, like --models) onto the dataset's models."""
    out: dict[str, float] = {}
    for key, val in prices.items():
        if key in models:
            out[key] = val
            continue
        hits = [m for m in models if key.lower() in m.lower()]
        if len(hits) == 1:
            out[hits[0]] = val
    return out


def grouped_folds(prompts: Sequence[str], k: int, seed: int = 0) -> list[np.ndarray]:
    """k test folds (index arrays) with identical prompts always in the same fold, so no test
    prompt is ever seen in training."""
    if k < 2:
        raise ValueError("need at least 2 folds")
    keys: dict[str, int] = {}
    gid = np.array([keys.setdefault(p.strip(), len(keys)) for p in prompts], dtype=np.int64)
    n_groups = len(keys)
    if n_groups < k:
        raise ValueError(f"{n_groups} distinct prompts cannot make {k} folds")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_groups)
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    fold_of_group[perm] = np.arange(n_groups) % k
    fold = fold_of_group[gid]
    return [np.flatnonzero(fold == f) for f in range(k)]
