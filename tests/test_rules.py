"""Rules: keywords on word boundaries, regexes, lengths; first match wins."""

from __future__ import annotations

from semroute.config import Config, RuleSpec
from semroute.rules import RuleSet


def test_keyword_regex_and_length_conditions() -> None:
    rules = RuleSet(
        (
            RuleSpec(name="sql", route="data_sql", keywords=("sql", "join")),
            RuleSpec(name="short", route="greeting", max_chars=5),
            RuleSpec(name="long", route="summarization", min_chars=100),
            RuleSpec(name="both", route="math", regex=r"\d+\s*\+\s*\d+", max_chars=30),
        )
    )
    assert rules.first_match("write SQL for me").name == "sql"  # type: ignore[union-attr]
    assert rules.first_match("a disjoint set") is None  # "join" inside a word does not count
    assert rules.first_match("hey").name == "short"  # type: ignore[union-attr]
    assert rules.first_match("x" * 150).name == "long"  # type: ignore[union-attr]
    assert rules.first_match("what is 2 + 2").name == "both"  # type: ignore[union-attr]
    assert rules.first_match("what is 2 + 2" + " padding" * 5) is None


def test_default_rules(config: Config) -> None:
    rules = RuleSet(config.rules)
    assert rules.first_match("hello!").route == "greeting"  # type: ignore[union-attr]
    assert rules.first_match("hello, can you refactor my parser?") is None
    hit = rules.first_match("prove that there are infinitely many primes and formalise it in Lean")
    assert hit is not None and hit.route == "formal_math"
    assert rules.first_match("our lean startup needs a marketing plan") is None
