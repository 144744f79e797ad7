"""Jurisdiction rule sets: TOML files, validated against a schema when they are loaded.

Each state file extends the federal baseline and overrides what its law says differently. Every
value carries its citation and the date it applies from, so counsel can review and correct the
files without reading code. A broken file raises RulesetError naming the file and the field.
"""

import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.vocabulary import (
    AuthorizationKind,
    DataCategory,
    DemandKind,
    LegalBasisKind,
    NotifiedPartyKind,
    RecipientKind,
    ReportKind,
)

__all__ = ["BUILTIN_RULES", "Cited", "RuleMeta", "Rulebook", "Ruleset", "RulesetError"]

BUILTIN_RULES = Path(__file__).resolve().parent / "rules"
"""The rule files shipped with the service."""

T = TypeVar("T")


class RulesetError(Exception):
    """Raised when a rule file is missing, unreadable or does not match the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cited(_Strict, Generic[T]):
    """A rule value with the law that sets it and the date it applies from."""

    value: T
    citation: str = Field(min_length=3)
    effective: date


class RuleMeta(_Strict):
    """What a finding of this rule says about itself."""

    title: str = Field(min_length=3)
    severity: Literal["low", "medium", "high"]
    impermissible: bool = Field(description="a finding makes the disclosure accountable")
    citation: str = Field(min_length=3)


class _Header(_Strict):
    id: str = Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
    version: str = Field(min_length=1)
    title: str
    extends: str | None = None


class _BasisList(_Strict):
    exempt_bases: Cited[list[LegalBasisKind]]


class _Accounting(_BasisList):
    lookback_years: Cited[int]


INSTRUMENTS = frozenset(
    {"authorization", "order", "demand", "report", "warning"}
    | {f"authorization:{k.value}" for k in AuthorizationKind}
    | {f"demand:{k.value}" for k in DemandKind}
)
"""What a basis can rely on: a family of facts, optionally narrowed to one kind."""


class _Basis(_Strict):
    """What one legal basis needs: who can plausibly receive under it, and on what instrument."""

    recipients: Cited[list[RecipientKind | Literal["any"]]]
    instruments: Cited[list[str]]

    @field_validator("instruments")
    @classmethod
    def _known_instruments(cls, value: Cited[list[str]]) -> Cited[list[str]]:
        unknown = sorted(set(value.value) - INSTRUMENTS)
        if unknown:
            raise ValueError(f"unknown instruments {unknown}; known: {sorted(INSTRUMENTS)}")
        return value

    def admits(self, kind: RecipientKind) -> bool:
        """True if a recipient of this kind can plausibly receive under the basis."""
        return "any" in self.recipients.value or kind in self.recipients.value


class _Authorizations(_Strict):
    oral_revocation_effective: Cited[bool]


Hours = int | Literal["immediately"]


class _ReportRules(_Strict):
    oral_within_hours: Cited[Hours] | None = None
    written_within_hours: Cited[Hours] | None = None
    allowed_categories: Cited[list[DataCategory]] | None = None


class _MandatedReport(_Strict):
    allowed_categories: Cited[list[DataCategory]]
    immediately_hours: Cited[int]
    child_abuse: _ReportRules | None = None
    elder_abuse: _ReportRules | None = None
    disabled_person_abuse: _ReportRules | None = None

    def for_kind(self, kind: ReportKind) -> _ReportRules:
        """The rules for one kind of report (empty when the law sets none)."""
        found: _ReportRules | None = getattr(self, kind.value)
        return found or _ReportRules()


class _DutyToWarn(_Strict):
    permitted_recipients: Cited[list[RecipientKind]]
    allowed_categories: Cited[list[DataCategory]]
    standard: Cited[str]
    must_notify: Cited[list[NotifiedPartyKind]] | None = None


class _Privilege(_Strict):
    statute: Cited[str]


class _Minors(_Strict):
    age_of_majority: Cited[int]
    minor_consent_age: Cited[int] | None = None


Years = Annotated[StrictInt, Field(gt=0, le=100)]
"""A whole number of calendar years, as a rule file writes it (7, not "7" or 7.0)."""
Citation = Annotated[StrictStr, Field(min_length=3)]


class _Retention(_Strict):
    """How long a record is kept after its last service, and how it is destroyed.

    Flat values, each paired with the citation that covers it (``CITED_BY``); the baseline sets
    every required one and states inherit what they do not override.
    """

    years_after_last_service: Years
    citation: Citation
    minor_years_after_majority: Years
    age_of_majority: Years
    minor_citation: Citation
    method: Citation
    method_citation: Citation
    part2_method_citation: Citation
    """Added to ``method_citation`` when the record is a 42 CFR Part 2 program's."""
    part2_years_after_last_service: Years | None = None
    """A state's own minimum for Part 2 records, if it sets one (42 CFR Part 2 sets none)."""
    part2_citation: Citation | None = None

    @model_validator(mode="after")
    def _part2_term_is_cited(self) -> Self:
        if (self.part2_years_after_last_service is None) != (self.part2_citation is None):
            raise ValueError(
                "part2_years_after_last_service and part2_citation are set together or not at all"
            )
        return self


CITED_BY: dict[str, str] = {
    "years_after_last_service": "citation",
    "minor_years_after_majority": "minor_citation",
    "age_of_majority": "minor_citation",
    "method": "method_citation",
    "part2_years_after_last_service": "part2_citation",
}
"""Which citation covers each retention value: a file that sets the value must also set it."""


def _uncited_retention(data: dict[str, Any]) -> list[str]:
    section = data.get("retention")
    if not isinstance(section, dict):
        return []
    return sorted(
        f"retention.{key} is set without retention.{citation} (a value needs its own citation)"
        for key, citation in CITED_BY.items()
        if key in section and citation not in section
    )


class Ruleset(_Strict):
    """One jurisdiction's rules, merged over the baseline it extends."""

    ruleset: _Header
    rules: dict[str, RuleMeta]
    bases: dict[LegalBasisKind, _Basis]
    authorizations: _Authorizations
    psychotherapy_notes: _BasisList
    minimum_necessary: _BasisList
    part2: _BasisList
    accounting: _Accounting
    mandated_report: _MandatedReport
    duty_to_warn: _DutyToWarn
    privilege: _Privilege
    minors: _Minors
    retention: _Retention

    @field_validator("bases")
    @classmethod
    def _every_basis(cls, value: dict[LegalBasisKind, _Basis]) -> dict[LegalBasisKind, _Basis]:
        missing = sorted(k.value for k in LegalBasisKind if k not in value)
        if missing:
            raise ValueError(f"no profile for the legal bases {missing}")
        return value

    @property
    def label(self) -> str:
        """``ID@version``, as findings name the rule set that produced them."""
        return f"{self.ruleset.id}@{self.ruleset.version}"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and "value" not in value:
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise RulesetError(f"rule file {path}: {error}") from None


def _depth(raw: dict[str, tuple[Path, dict[str, Any]]], ident: str) -> int:
    depth, seen = 0, {ident}
    parent = raw[ident][1]["ruleset"].get("extends")
    while parent in raw and parent not in seen:
        depth, seen = depth + 1, seen | {parent}
        parent = raw[parent][1]["ruleset"].get("extends")
    return depth


REQUIRED_RULES = frozenset(
    {"PN-1", "AU-1", "AU-2", "AU-3", "AU-4", "LG-1", "LG-3", "LG-4", "LG-5", "MN-1", "MN-2",
     "MR-1", "DW-1", "DW-2", "AC-2", "MI-1", "FA-1", "RF-1", "BA-1", "BA-2", "SC-1"}
)  # fmt: skip


@dataclass(frozen=True)
class Rulebook:
    """Every loaded rule set, by jurisdiction id."""

    rulesets: dict[str, Ruleset]
    baseline: str = "US"

    @classmethod
    def load(cls, directory: Path = BUILTIN_RULES) -> "Rulebook":
        """Read and validate every ``*.toml`` in ``directory``; raise RulesetError if any fails."""
        raw: dict[str, tuple[Path, dict[str, Any]]] = {}
        for path in sorted(directory.glob("*.toml")):
            data = _read(path)
            ident = data.get("ruleset", {}).get("id")
            if not isinstance(ident, str):
                raise RulesetError(f"rule file {path}: [ruleset] id is missing")
            if ident in raw:
                raise RulesetError(f"rule file {path}: rule set {ident} is defined twice")
            uncited = _uncited_retention(data)
            if uncited:
                raise RulesetError(f"rule file {path}: {'; '.join(uncited)}")
            raw[ident] = (path, data)
        if "US" not in raw:
            raise RulesetError(f"no federal baseline (US.toml) in {directory}")
        rulesets = {}
        # Baselines first, so an error in a baseline is reported against its own file.
        for ident, (path, data) in sorted(raw.items(), key=lambda i: _depth(raw, i[0])):
            merged, seen = data, {ident}
            parent = data["ruleset"].get("extends")
            while parent:
                if parent not in raw or parent in seen:
                    raise RulesetError(f"rule file {path}: cannot extend {parent!r}")
                seen.add(parent)
                base = raw[parent][1]
                merged = _merge(base, merged)
                parent = base["ruleset"].get("extends")
            try:
                ruleset = Ruleset.model_validate(merged)
            except ValidationError as error:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
                )
                raise RulesetError(f"rule file {path}: {problems}") from None
            missing = REQUIRED_RULES - set(ruleset.rules)
            if missing:
                raise RulesetError(f"rule file {path}: rules {sorted(missing)} are not described")
            rulesets[ident] = ruleset
        return cls(rulesets=rulesets)

    def for_jurisdiction(self, jurisdiction: str | None) -> tuple[Ruleset, bool]:
        """The rule set of a jurisdiction, and True if the baseline stands in for an unknown one."""
        if jurisdiction in self.rulesets:
            return self.rulesets[jurisdiction], False
        return self.rulesets[self.baseline], jurisdiction is not None and jurisdiction != "US"
