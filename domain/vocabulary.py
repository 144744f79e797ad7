"""Controlled vocabularies of PRODUCT.md section 3, as string enums.

Values are the wire values of the public API; an unknown value is a malformed request.
"""

from enum import StrEnum

__all__ = [
    "AccessAction",
    "ActorRole",
    "AuthorizationKind",
    "BreakGlassDetermination",
    "DataCategory",
    "DemandKind",
    "DemandOutcome",
    "DisclosureMethod",
    "FindingResolution",
    "Grantor",
    "LegalBasisKind",
    "MinimumNecessaryMode",
    "NotifiedPartyKind",
    "PrivilegeHolder",
    "PurposeOfUse",
    "RecipientKind",
    "ReportKind",
    "Setting",
]


class DataCategory(StrEnum):
    """What part of a client record was read or released."""

    DEMOGRAPHICS = "demographics"
    CONTACT = "contact"
    INSURANCE_BILLING = "insurance_billing"
    APPOINTMENTS = "appointments"
    DIAGNOSIS = "diagnosis"
    TREATMENT_PLAN = "treatment_plan"
    MEDICATIONS = "medications"
    PROGRESS_NOTES = "progress_notes"
    ASSESSMENTS = "assessments"
    RISK_ASSESSMENT = "risk_assessment"
    CORRESPONDENCE = "correspondence"
    PSYCHOTHERAPY_NOTES = "psychotherapy_notes"
    SUD_RECORDS = "sud_records"
    SUD_COUNSELING_NOTES = "sud_counseling_notes"
    COURT_ORDERED_EVALUATION = "court_ordered_evaluation"


class PurposeOfUse(StrEnum):
    """HL7 v3 ActReason purpose-of-use codes (reference/domain.md B1)."""

    TREAT = "TREAT"
    ETREAT = "ETREAT"
    ERTREAT = "ERTREAT"
    BTG = "BTG"
    COC = "COC"
    CAREMGT = "CAREMGT"
    HPAYMT = "HPAYMT"
    CLMATTCH = "CLMATTCH"
    COVAUTH = "COVAUTH"
    ELIGVER = "ELIGVER"
    HOPERAT = "HOPERAT"
    HCOMPL = "HCOMPL"
    HACCRED = "HACCRED"
    HLEGAL = "HLEGAL"
    PUBHLTH = "PUBHLTH"
    POPHLTH = "POPHLTH"
    PATSFTY = "PATSFTY"
    HRESCH = "HRESCH"
    TRAIN = "TRAIN"
    PATRQT = "PATRQT"
    FAMRQT = "FAMRQT"
    PWATRNY = "PWATRNY"
    SUPNWK = "SUPNWK"
    HDECD = "HDECD"
    HDIRECT = "HDIRECT"
    GOV = "GOV"
    FRAUD = "FRAUD"
    HSYSADMIN = "HSYSADMIN"
    RECORDMGT = "RECORDMGT"
    THREAT = "THREAT"
    OVRER = "OVRER"
    OVRPS = "OVRPS"
    OVRTPS = "OVRTPS"
    OVRPJ = "OVRPJ"
    OVRINCOMP = "OVRINCOMP"


class LegalBasisKind(StrEnum):
    """The legal basis a disclosure relies on (PRODUCT.md section 3, with its CFR anchors)."""

    CLIENT_AUTHORIZATION = "client_authorization"  # 45 CFR 164.508
    PSYCHOTHERAPY_NOTES_AUTHORIZATION = "psychotherapy_notes_authorization"  # 164.508(a)(2)
    PART2_CONSENT = "part2_consent"  # 42 CFR 2.31
    TO_CLIENT = "to_client"  # 164.502(a)(1)(i)
    TREATMENT = "treatment"  # 164.506
    PAYMENT = "payment"  # 164.506
    OPERATIONS = "operations"  # 164.506
    COURT_ORDER = "court_order"  # 164.512(e)(1)(i)
    SUBPOENA_WITH_ASSURANCES = "subpoena_with_assurances"  # 164.512(e)(1)(ii)
    REQUIRED_BY_LAW = "required_by_law"  # 164.512(a)
    MANDATED_REPORT = "mandated_report"  # 164.512(b)/(c) and state statute
    DUTY_TO_WARN = "duty_to_warn"  # 164.512(j) and state statute
    HEALTH_OVERSIGHT = "health_oversight"  # 164.512(d)
    LAW_ENFORCEMENT = "law_enforcement"  # 164.512(f)
    EMERGENCY = "emergency"
    NONE_STATED = "none_stated"


class ActorRole(StrEnum):
    """The role of the person or system that acted on a record."""

    TREATING_CLINICIAN = "treating_clinician"
    SUPERVISOR = "supervisor"
    TRAINEE = "trainee"
    BILLING = "billing"
    FRONT_DESK = "front_desk"
    RECORDS_CUSTODIAN = "records_custodian"
    COMPLIANCE_OFFICER = "compliance_officer"
    CLIENT = "client"
    PERSONAL_REPRESENTATIVE = "personal_representative"
    EXTERNAL = "external"


class Setting(StrEnum):
    """Who the record's therapy is with."""

    INDIVIDUAL = "individual"
    COUPLE = "couple"
    FAMILY = "family"
    GROUP = "group"


class AccessAction(StrEnum):
    """What an access did to the record."""

    VIEW = "view"
    PRINT = "print"
    DOWNLOAD = "download"
    EXPORT = "export"
    CREATE = "create"
    UPDATE = "update"


class BreakGlassDetermination(StrEnum):
    """Outcome of the review of an emergency (break-glass) access."""

    APPROPRIATE = "appropriate"
    INAPPROPRIATE = "inappropriate"


class AuthorizationKind(StrEnum):
    """The kind of written permission a client (or representative) gave."""

    HIPAA_GENERAL = "hipaa_general"
    PSYCHOTHERAPY_NOTES = "psychotherapy_notes"
    PART2_TPO = "part2_tpo"
    PART2_SPECIFIC = "part2_specific"
    PART2_LEGAL_PROCEEDINGS = "part2_legal_proceedings"
    STATE_SPECIFIC = "state_specific"


class Grantor(StrEnum):
    """Who signed an authorization."""

    CLIENT = "client"
    PERSONAL_REPRESENTATIVE = "personal_representative"


class RecipientKind(StrEnum):
    """Who received records or a warning."""

    CLIENT = "client"
    PERSONAL_REPRESENTATIVE = "personal_representative"
    PARENT = "parent"
    FAMILY_MEMBER = "family_member"
    ATTORNEY = "attorney"
    COURT = "court"
    GOVERNMENT_AGENCY = "government_agency"
    LAW_ENFORCEMENT = "law_enforcement"
    HEALTH_PROVIDER = "health_provider"
    HEALTH_PLAN = "health_plan"
    BUSINESS_ASSOCIATE = "business_associate"
    LICENSING_BOARD = "licensing_board"
    EMPLOYER = "employer"
    POTENTIAL_VICTIM = "potential_victim"
    RESEARCHER = "researcher"
    OTHER = "other"


class DemandKind(StrEnum):
    """The legal instrument that demands records."""

    ATTORNEY_SUBPOENA = "attorney_subpoena"
    COURT_SUBPOENA = "court_subpoena"
    COURT_ORDER = "court_order"
    WARRANT = "warrant"
    ADMINISTRATIVE_REQUEST = "administrative_request"
    LICENSING_BOARD = "licensing_board"


class PrivilegeHolder(StrEnum):
    """Who asserted the psychotherapist-patient privilege."""

    CLIENT = "client"
    THERAPIST_ON_BEHALF = "therapist_on_behalf"


class DemandOutcome(StrEnum):
    """How a legal demand was answered."""

    COMPLIED = "complied"
    PARTIALLY_COMPLIED = "partially_complied"
    REFUSED_PRIVILEGE = "refused_privilege"
    QUASHED = "quashed"
    WITHDRAWN = "withdrawn"


class ReportKind(StrEnum):
    """The kind of mandated abuse report."""

    CHILD_ABUSE = "child_abuse"
    ELDER_ABUSE = "elder_abuse"
    DISABLED_PERSON_ABUSE = "disabled_person_abuse"


class NotifiedPartyKind(StrEnum):
    """Who was warned under a duty to warn or protect."""

    VICTIM = "victim"
    LAW_ENFORCEMENT = "law_enforcement"
    OTHER = "other"


class DisclosureMethod(StrEnum):
    """How records left the practice."""

    MAIL = "mail"
    FAX = "fax"
    EMAIL = "email"
    SECURE_PORTAL = "secure_portal"
    ELECTRONIC_EXCHANGE = "electronic_exchange"
    IN_PERSON = "in_person"
    PHONE = "phone"
    COURT_FILING = "court_filing"
    OTHER = "other"


class MinimumNecessaryMode(StrEnum):
    """How the minimum-necessary standard was met (45 CFR 164.514(d))."""

    EXEMPT = "exempt"
    PROTOCOL = "protocol"
    INDIVIDUAL_REVIEW = "individual_review"


class FindingResolution(StrEnum):
    """How a compliance officer closed a finding."""

    REMEDIATED = "remediated"
    ACCEPTED_RISK = "accepted_risk"
    FALSE_POSITIVE = "false_positive"
