"""Config loading and validation: every error names the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from semroute.config import ConfigError, default_config_path, load_config


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def _default() -> dict:
    return yaml.safe_load(default_config_path().read_text())


def test_default_config_is_realistic() -> None:
    c = load_config()
    assert len(c.models) >= 4
    assert len(c.routes) >= 12
    prices = sorted(m.input_price_per_mtok for m in c.models)
    assert prices[-1] / prices[0] >= 10  # a real cheap-to-frontier spread
    assert all(len(r.utterances) >= 5 for r in c.routes if r.name != c.policy.default_route)
    assert len(c.version) == 16


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["models"][0].update(input_price_per_mtok=-1), "models.0.input_price_per_mtok"),
        (lambda d: d["models"][0].update(quality=1.5), "models.0.quality"),
        (lambda d: d["models"][0].update(colour="red"), "models.0.colour"),
        (lambda d: d["routes"][1].update(min_quality=0.99), "min_quality"),
        (lambda d: d["routes"][1].update(models=["no-such-model"]), "no-such-model"),
        (lambda d: d["policy"].update(default_route="nowhere"), "nowhere"),
        (lambda d: d["rules"][0].update(regex="(unclosed"), "rules.0.regex"),
        (lambda d: d["rules"][0].update(route="nowhere"), "nowhere"),
        (lambda d: d["models"].append(dict(d["models"][0])), "duplicate model names"),
        (lambda d: d["server"].update(max_prompt_bytes=0), "server.max_prompt_bytes"),
        (lambda d: d["encoder"].update(device="tpu"), "encoder.device"),
        (lambda d: d.pop("policy"), "policy"),
    ],
)
def test_invalid_field_is_named(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    d = _default()
    mutate(d)
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, d))
    assert expected in str(e.value)


def test_unparsable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "models: [unclosed"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a list"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_config_is_immutable() -> None:
    c = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        c.models[0].quality = 0.1  # type: ignore[misc]
    assert c.models[0].quality != 0.1


def test_index_path_resolves_against_config_dir(tmp_path: Path) -> None:
    d = _default()
    d["index_path"] = "idx/here"
    c = load_config(_write(tmp_path, d))
    assert c.resolved_index_path() == (tmp_path / "idx" / "here").resolve()


def test_extends_merges_sections_over_a_base(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(default_config_path().read_text())
    (tmp_path / "over.yaml").write_text(
        "extends: base.yaml\ncache: {enabled: false}\nbatching: {max_batch: 8}\n"
    )
    base, over = load_config(tmp_path / "base.yaml"), load_config(tmp_path / "over.yaml")
    assert not over.cache.enabled and over.cache.ttl_s == base.cache.ttl_s
    assert over.batching.max_batch == 8 and over.batching.max_wait_us == base.batching.max_wait_us
    assert over.routes == base.routes and over.version != base.version
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "loop.yaml")


def test_model_dirs_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configs/student.yaml names ../models/...: it works from any working directory."""
    from semroute.server.app import make_encoder

    config = load_config(Path(__file__).resolve().parent.parent / "configs" / "student.yaml")
    monkeypatch.chdir(tmp_path)
    assert make_encoder(config).id.startswith("minilm-l3-student")
