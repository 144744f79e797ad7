"""The jurisdiction rule files: they load, every value is cited, broken ones fail loudly."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from domain.policy.reference import render_markdown
from domain.policy.rulesets import BUILTIN_RULES, REQUIRED_RULES, Cited, Rulebook, RulesetError
from service.cli import app
from tests.policy_support import broken_rules


def _cited_values(model: BaseModel, path: str = "") -> list[tuple[str, Cited[Any]]]:
    found: list[tuple[str, Cited[Any]]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{path}.{name}" if path else name
        if isinstance(value, Cited):
            found.append((where, value))
        elif isinstance(value, BaseModel):
            found += _cited_values(value, where)
    return found


def test_the_built_in_rule_sets_load() -> None:
    book = Rulebook.load()
    assert set(book.rulesets) == {"US", "US-MA", "US-CA"}
    assert book.rulesets["US-MA"].ruleset.extends == "US"


@pytest.mark.parametrize("ident", ["US", "US-MA", "US-CA"])
def test_every_rule_value_carries_a_citation_and_an_effective_date(ident: str) -> None:
    ruleset = Rulebook.load().rulesets[ident]
    values = _cited_values(ruleset)
    assert len(values) >= 12
    for where, value in values:
        assert len(value.citation) >= 3, where
        assert value.effective.year >= 1960, where
    for rule_id, meta in ruleset.rules.items():
        assert meta.citation, rule_id


def test_states_override_the_baseline_where_their_law_differs() -> None:
    book = Rulebook.load()
    ma, ca, us = (book.rulesets[i] for i in ("US-MA", "US-CA", "US"))
    assert ma.mandated_report.child_abuse is not None
    assert ca.mandated_report.child_abuse is not None
    assert ma.mandated_report.child_abuse.written_within_hours is not None
    assert ca.mandated_report.child_abuse.written_within_hours is not None
    assert ma.mandated_report.child_abuse.written_within_hours.value == 48
    assert ca.mandated_report.child_abuse.written_within_hours.value == 36
    assert us.mandated_report.child_abuse is None
    assert "c.233" in ma.privilege.statute.value
    assert ca.minors.minor_consent_age is not None
    assert ma.accounting == us.accounting, "inherited unchanged"


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        ("US-MA.toml", 'citation = "M.G.L. c.119 s.51A(a): written report within 48 hours"\n', "",
         "mandated_report.child_abuse.written_within_hours.citation"),
        ("US-CA.toml", 'value = ["demographics", "contact", "risk_assessment", "appointments"]',
         'value = ["demographics", "horoscope"]', "allowed_categories"),
        ("US.toml", "[rules.MI-1]", "[rules.MI-1\n", "US.toml"),
        ("US.toml", 'severity = "high"', 'severity = "dire"', "rules.PN-1.severity"),
        ("US-MA.toml", "[privilege.statute]", "[privilege.shelf_life]", "shelf_life"),
        ("US.toml", 'value = ["order"]', 'value = ["horoscope"]', "unknown instruments"),
        ("US-CA.toml", 'extends = "US"', 'extends = "US-ZZ"', "cannot extend"),
    ],
    ids=["missing-citation", "unknown-category", "toml-syntax", "bad-severity", "unknown-key",
         "unknown-instrument", "bad-parent"],
)  # fmt: skip
def test_a_broken_rule_file_fails_with_a_message_naming_file_and_field(
    tmp_path: Path, file: str, old: str, new: str, says: str
) -> None:
    directory = broken_rules(tmp_path, file, old, new)
    with pytest.raises(RulesetError) as caught:
        Rulebook.load(directory)
    message = str(caught.value)
    assert file in message
    assert says in message


def test_a_rule_without_a_description_is_refused(tmp_path: Path) -> None:
    directory = broken_rules(tmp_path, "US.toml", "[rules.FA-1]", "[rules.FA-9]")
    with pytest.raises(RulesetError, match="FA-1"):
        Rulebook.load(directory)


def test_start_up_stops_with_a_clear_message_on_a_broken_rule_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = broken_rules(tmp_path, "US.toml", 'citation = "45 CFR 164.508(a)(2)"', "")
    monkeypatch.setenv("DISCLOSURE_AUDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DISCLOSURE_AUDIT_RULES_DIR", str(directory))
    result = CliRunner().invoke(app, ["keys", "list"])
    assert result.exit_code == 2
    assert "rules.PN-1.citation" in result.output
    assert "DISCLOSURE_AUDIT_RULES_DIR" in result.output
    checked = CliRunner().invoke(app, ["rules", str(BUILTIN_RULES), "--json"])
    assert checked.exit_code == 0
    assert '"US-MA"' in checked.output


RULES_DOC = Path(__file__).resolve().parents[2] / "docs" / "RULES.md"


def test_the_committed_rules_reference_is_what_the_rule_files_say() -> None:
    rendered = render_markdown(Rulebook.load())
    assert RULES_DOC.read_text(encoding="utf-8") == rendered, (
        "docs/RULES.md is stale: run `disclosure-audit rules --markdown > docs/RULES.md`"
    )


def test_the_rules_reference_shows_every_rule_and_each_state_value() -> None:
    text = render_markdown(Rulebook.load())
    for rule in REQUIRED_RULES:
        assert f"| {rule} |" in text
    assert "| US-CA | victim, law_enforcement | Cal. Civ. Code 43.92(b)" in text
    assert "| US-MA | 48 | M.G.L. c.19C s.10" in text


def test_the_cli_prints_the_rules_reference() -> None:
    result = CliRunner().invoke(app, ["rules", str(BUILTIN_RULES), "--markdown"])
    assert result.exit_code == 0, result.output
    assert result.output == RULES_DOC.read_text(encoding="utf-8")
