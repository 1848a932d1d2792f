#!/usr/bin/env python3
"""Build tests/data/quality_mmlu_small.csv: a small fixed labelled set for the quality tests.

Derived from RouteLLM's per-prompt MMLU results (Apache-2.0) in the shared data directory:
the first 100 prompts of six subjects (contaminated prompts dropped), the two models' 0/1
correctness and an extra ``subject`` column (the loaders must ignore it).

    python scripts/make_eval_fixture.py [--data ../shared/data/routellm] [--out tests/data/...]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

# Mixed gaps between the two models (from about +0.25 to none), so the topic matters.
SUBJECTS = (
    "formal_logic",
    "machine_learning",
    "conceptual_physics",
    "high_school_macroeconomics",
    "us_foreign_policy",
    "marketing",
)
PER_SUBJECT = 100


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=repo.parent / "shared" / "data" / "routellm")
    ap.add_argument("--out", type=Path, default=repo / "tests" / "data" / "quality_mmlu_small.csv")
    args = ap.parse_args()
    contaminated = {
        json.loads(x)["eval_prompt"].strip()
        for x in (args.data / "mmlu" / "contaminated_prompts.jsonl").read_text().splitlines()
        if x.strip()
    }
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for subject in SUBJECTS:
        path = args.data / "mmlu" / "responses" / f"mmlu_{subject}.csv"
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            kept = [r for r in reader if r["prompt"].strip() not in contaminated][:PER_SUBJECT]
        rows += [{**r, "subject": subject} for r in kept]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["subject", *header])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} prompts to {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
