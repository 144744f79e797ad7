"""The committed OpenAPI document matches the app; logs carry no PHI."""

import logging

import pytest

from service.openapi_doc import COMMITTED, openapi_json
from tests.conftest import Api
from tests.factories import example, unique_name


def test_the_committed_openapi_document_matches_the_app() -> None:
    assert COMMITTED.read_text() == openapi_json(), (
        "openapi/openapi.json is stale: run '.venv/bin/disclosure-audit openapi "
        "--out openapi/openapi.json' and commit it"
    )


def test_operation_ids_are_stable_names() -> None:
    import json

    document = json.loads(openapi_json())
    ids = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert ids == {
        "post_event", "post_events_batch", "get_record_timeline", "get_checkpoint",
        "get_public_key", "get_inclusion_proof", "get_consistency_proof", "create_export",
        "get_export", "get_export_bundle", "get_access_log", "get_disclosures", "get_findings",
        "get_record_status", "get_accounting", "get_audit_reads", "acknowledge_finding",
        "destroy_record", "fhir_post_bundle", "fhir_post_audit_event", "fhir_post_consent",
        "fhir_put_consent", "fhir_search_audit_events", "fhir_read_audit_event",
        "fhir_capability_statement",
    }  # fmt: skip


def test_every_get_answer_is_typed_down_to_its_list_items() -> None:
    import json

    document = json.loads(openapi_json())
    schemas = document["components"]["schemas"]

    def typed(schema: dict[str, object]) -> bool:
        if "$ref" in schema:
            target = schemas[str(schema["$ref"]).rsplit("/", 1)[1]]
            return bool(target.get("properties")) or target.get("type") == "string"
        return schema.get("type") in {"string", "integer", "boolean"}

    for path, item in document["paths"].items():
        get = item.get("get")
        if get is None:
            continue
        body = get["responses"]["200"]["content"]
        if "application/json" not in body:
            continue  # text: checkpoints, keys, bundles
        schema = body["application/json"]["schema"]
        assert typed(schema), f"GET {path} answers an untyped object"
        target = schemas[schema["$ref"].rsplit("/", 1)[1]]
        if "items" in target["properties"]:
            listed = target["properties"]["items"]["items"]
            assert "$ref" in listed, f"GET {path} lists untyped items"
            assert schemas[listed["$ref"].rsplit("/", 1)[1]]["properties"], path


@pytest.mark.parametrize("store", ["sqlite"])
def test_no_phi_appears_in_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    recipient = unique_name()
    record_ref = "mrn-" + unique_name("").strip().replace(" ", "")
    body = example("DisclosureMade", recipient={"name": recipient, "kind": "attorney"})
    headers = api.writer()
    api.client.post(f"/v1/records/{record_ref}/events", json=body, headers=headers)
    api.client.post(
        f"/v1/records/{record_ref}/events", json={**body, "method": "fax"}, headers=headers
    )
    api.client.post(
        f"/v1/records/{record_ref}/events", json={**body, "bogus": recipient}, headers=headers
    )
    api.client.get(f"/v1/records/{record_ref}/timeline", headers=headers)
    # The test client (httpx2) logs its own URLs; what matters is what the service logs.
    logged = "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith("httpx")
    )
    assert "/v1/records/{record_ref}/events" in logged, "the access log names route templates"
    assert recipient not in logged
    assert record_ref not in logged
    assert headers["Authorization"].split()[1] not in logged
