"""Builders for policy tests: facts at chosen days, judged the way ingest judges them."""

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from domain import facts
from domain.policy.engine import Judgment, judge_on_record
from domain.policy.rulesets import BUILTIN_RULES, Rulebook
from tests.factories import example

__all__ = ["BOOK", "at", "broken_rules", "fact", "replay", "rules_of", "verdict"]

BOOK = Rulebook.load()
_FACT: TypeAdapter[facts.FactBase] = TypeAdapter(facts.Fact)
_DAY0 = datetime.fromisoformat("2026-01-05T10:00:00-05:00")


def broken_rules(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of the built-in rule files with ``old`` replaced by ``new`` once in ``file``."""
    directory = tmp_path / "rules"
    shutil.copytree(BUILTIN_RULES, directory)
    path = directory / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return directory


def at(day: float) -> str:
    """An RFC 3339 time ``day`` days after a fixed start."""
    return (_DAY0 + timedelta(days=day)).isoformat()


def fact(type_: str, day: float = 0, **fields: Any) -> facts.FactBase:
    """A validated fact of ``type_`` that occurred on ``day``."""
    return _FACT.validate_python(example(type_, occurred_at=at(day), **fields))


def verdict(history: list[facts.FactBase], subject: facts.FactBase) -> Judgment:
    """Judge ``subject`` against ``history`` as ingest would."""
    return judge_on_record(BOOK, history, subject)


def rules_of(history: list[facts.FactBase], subject: facts.FactBase) -> set[str]:
    """The rule ids that fire on ``subject``."""
    return verdict(history, subject).rules


def replay(events: list[facts.FactBase]) -> list[tuple[facts.FactBase, Judgment]]:
    """Judge each fact against the ones before it, in order, as they would arrive."""
    return [(event, verdict(events[:n], event)) for n, event in enumerate(events)]
