"""FHIR R4 at ``/fhir/R4/``: BALP AuditEvents and Consents in, AuditEvent search out."""
