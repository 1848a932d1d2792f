"""Fuzz config loading: bytes as a YAML config file through the two loaders: the one a
bundle's config goes through while the server runs (libyaml), and, for one input in
thirty-two, `load_config` (pure-Python YAML, `extends`; ~20x slower).

Allowed outcome: a Config, or a ConfigError naming what is wrong.

    python -m fuzz.config_yaml -runs=100000
"""

from __future__ import annotations

import atheris

from fuzz.common import scratch_dir

with atheris.instrument_imports(include=["semroute"]):
    from semroute.admin.bundles import load_bundle_config
    from semroute.config import ConfigError, load_config

WORK = scratch_dir("semroute-fuzz-config-")
PATH = WORK / "config.yaml"


def test_one(data: bytes) -> None:
    PATH.write_bytes(data)
    load = load_config if data and data[-1] % 32 == 0 else load_bundle_config
    try:
        config = load(PATH)
    except ConfigError as e:
        assert str(e)
        return
    assert config.models and config.routes and config.version


def seeds() -> list[bytes]:
    from fuzz.common import REPO

    return [p.read_bytes() for p in sorted((REPO / "configs").glob("*.yaml"))]


if __name__ == "__main__":
    from fuzz.common import main

    main(test_one, seeds)
