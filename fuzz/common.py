"""What every harness shares: the libFuzzer entry point, seed corpora, and the rule that
only the surface's documented refusals may escape (anything else is a crash)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[1]
# Scratch files go to memory when the system has a tmpfs there (each input writes one).
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


def scratch_dir(prefix: str) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH))


def run(test_one: Callable[[bytes], None], seeds: Iterable[bytes], argv: list[str]) -> None:
    """Fuzz `test_one` under libFuzzer's flags in `argv` (-runs, -max_total_time, ...).

    Without a corpus directory in `argv`, the seeds are written to a fresh one,
    so the mutations start from real inputs.
    """
    args = list(argv)
    if not any(not a.startswith("-") for a in args[1:]):
        import tempfile

        corpus = Path(tempfile.mkdtemp(prefix="semroute-fuzz-corpus-"))
        for i, seed in enumerate(seeds):
            (corpus / f"seed-{i}").write_bytes(seed)
        args.append(str(corpus))
    atheris.Setup(args, test_one)
    atheris.Fuzz()


def main(test_one: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    run(test_one, seeds(), sys.argv)
