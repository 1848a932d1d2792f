"""Keyword, regex and length rules, checked before the encoder runs.

Rules are the operator's override: cheap, explicit and evaluated in config
order, the first match wins. A match skips the encoder entirely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from semroute.config import RuleSpec


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    spec: RuleSpec
    keywords: re.Pattern[str] | None
    regex: re.Pattern[str] | None

    def matches(self, text: str) -> bool:
        s = self.spec
        if s.min_chars is not None and len(text) < s.min_chars:
            return False
        if s.max_chars is not None and len(text) > s.max_chars:
            return False
        if self.keywords is not None and self.keywords.search(text) is None:
            return False
        return self.regex is None or self.regex.search(text) is not None


class RuleSet:
    """The config's rules, compiled once."""

    def __init__(self, rules: tuple[RuleSpec, ...]) -> None:
        self._rules = tuple(_compile(r) for r in rules)

    def __len__(self) -> int:
        return len(self._rules)

    def first_match(self, text: str) -> RuleSpec | None:
        for rule in self._rules:
            if rule.matches(text):
                return rule.spec
        return None


def _compile(spec: RuleSpec) -> _CompiledRule:
    keywords = None
    if spec.keywords:
        alternatives = "|".join(re.escape(k) for k in spec.keywords)
        keywords = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    regex = re.compile(spec.regex) if spec.regex else None
    return _CompiledRule(spec, keywords, regex)
