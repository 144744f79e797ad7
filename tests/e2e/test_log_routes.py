"""Checkpoints, proofs and exports over HTTP, checked with the offline verifier's own code."""

import base64
import io
import tarfile
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain import merkle
from service.auth import Role
from service.verify import verify_bundle
from tests.conftest import Api
from tests.factories import example


def _post(api: Api, n: int, ref: str = "rec-log") -> list[str]:
    ids = []
    headers = api.writer()
    for _ in range(n):
        body = example("RecordAccessed")
        assert (
            api.client.post(f"/v1/records/{ref}/events", json=body, headers=headers).status_code
            == 201
        )
        ids.append(body["event_id"])
    return ids


def _checkpoint(api: Api, headers: dict[str, str]) -> tuple[int, bytes, str]:
    response = api.client.get("/v1/log/checkpoint", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    note = response.text
    origin, size, root = note.split("\n")[:3]
    assert origin.endswith("/" + api.tenant)
    assert "\n\n\u2014 " in note, "a C2SP signed note"
    return int(size), base64.b64decode(root), note


def _signed_by(note: str, vkey: str) -> bool:
    """Whether the note carries a valid signature by the vkey (C2SP signed-note)."""
    name, id_hex, encoded = vkey.split("+", 2)
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded)[1:])
    text, _, lines = note.rpartition("\n\n")
    for line in lines.splitlines():
        _, signer, signature = line.split(" ")
        blob = base64.b64decode(signature)
        if (signer, blob[:4].hex()) == (name, id_hex):
            try:
                public.verify(blob[4:], (text + "\n").encode())
            except InvalidSignature:
                return False
            return True
    return False


def test_each_tenants_key_is_named_by_its_log_and_signs_its_checkpoints_only(api: Api) -> None:
    _post(api, 2)
    other = api.tenant + "-y"
    body = example("RecordAccessed")
    posted = api.client.post("/v1/records/r/events", json=body, headers=api.writer(other))
    assert posted.status_code == 201
    notes, keys = {}, {}
    for tenant in (api.tenant, other):
        regulator = api.key(Role.REGULATOR, tenant=tenant)
        notes[tenant] = api.client.get("/v1/log/checkpoint", headers=regulator).text
        response = api.client.get("/v1/log/public-key", headers=regulator)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        keys[tenant] = response.text.splitlines()
        origin = notes[tenant].split("\n", 1)[0]
        assert origin == f"disclosure-audit.local/{tenant}"
        assert keys[tenant]
        assert all(k.startswith(origin + "+") for k in keys[tenant]), keys[tenant]
    for tenant, another in ((api.tenant, other), (other, api.tenant)):
        assert _signed_by(notes[tenant], keys[tenant][-1])
        assert not any(_signed_by(notes[tenant], k) for k in keys[another])


def test_an_inclusion_proof_verifies_against_the_signed_checkpoint(api: Api) -> None:
    ids = _post(api, 5)
    regulator = api.key(Role.REGULATOR)
    size, root, _ = _checkpoint(api, regulator)
    assert size == 6
    proof = api.client.get(
        "/v1/log/proofs/inclusion",
        params={"event_id": ids[2], "tree_size": size},
        headers=regulator,
    ).json()
    assert proof["leaf_index"] == 3
    merkle.verify_inclusion(
        base64.b64decode(proof["leaf_hash"]),
        proof["leaf_index"],
        size,
        [base64.b64decode(p) for p in proof["proof"]],
        root,
    )


def test_a_consistency_proof_links_two_checkpoints(api: Api) -> None:
    regulator = api.key(Role.REGULATOR)
    _post(api, 3)
    old_size, old_root, old_note = _checkpoint(api, regulator)
    assert _checkpoint(api, regulator)[2] == old_note, "one checkpoint per size, signed once"
    _post(api, 4)
    new_size, new_root, _ = _checkpoint(api, regulator)
    proof = api.client.get(
        "/v1/log/proofs/consistency",
        params={"from_size": old_size, "to_size": new_size},
        headers=regulator,
    ).json()
    merkle.verify_consistency(
        old_size, new_size, [base64.b64decode(p) for p in proof["proof"]], old_root, new_root
    )
    too_big = api.client.get("/v1/log/proofs/consistency", params={"from_size": 99},
                             headers=regulator)  # fmt: skip
    assert too_big.status_code == 422


def test_an_export_over_http_downloads_a_bundle_that_verifies(api: Api, tmp_path: Path) -> None:
    _post(api, 3, "rec-a")
    _post(api, 2, "rec-b")
    regulator = api.key(Role.REGULATOR)
    started = api.client.post("/v1/exports", json={"record_refs": ["rec-a"]}, headers=regulator)
    assert started.status_code == 202
    export_id = started.json()["export_id"]
    for _ in range(100):
        status = api.client.get(f"/v1/exports/{export_id}", headers=regulator).json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert status["status"] == "done"
    assert status["events"] == 4
    bundle = api.client.get(f"/v1/exports/{export_id}/bundle", headers=regulator)
    assert bundle.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(bundle.content)) as archive:
        archive.extractall(tmp_path, filter="data")
    keys = api.client.get("/v1/log/public-key", headers=regulator).text
    result = verify_bundle(tmp_path / f"export-{export_id}", keys)
    assert result.events == 4
    assert not result.full
    assert result.key_name == f"disclosure-audit.local/{api.tenant}"
    assert (tmp_path / f"export-{export_id}" / "public-key.txt").read_text() == keys
    other = api.key(Role.REGULATOR, tenant=api.tenant + "-x")
    assert api.client.get(f"/v1/exports/{export_id}", headers=other).status_code == 404
    assert api.client.get(f"/v1/exports/{export_id}/bundle", headers=other).status_code == 404


def test_an_http_export_links_to_a_previous_checkpoint(api: Api, tmp_path: Path) -> None:
    _post(api, 3, "rec-c")
    regulator = api.key(Role.REGULATOR)
    _, _, earlier = _checkpoint(api, regulator)
    _post(api, 2, "rec-c")
    wrong = api.client.post("/v1/exports", json={"previous_checkpoint": "other/log\n1\nAA==\n"},
                            headers=regulator)  # fmt: skip
    assert wrong.status_code == 422
    started = api.client.post("/v1/exports", json={"previous_checkpoint": earlier},
                              headers=regulator)  # fmt: skip
    assert started.status_code == 202
    export_id = started.json()["export_id"]
    for _ in range(100):
        if api.client.get(f"/v1/exports/{export_id}", headers=regulator).json()["status"] == "done":
            break
        time.sleep(0.05)
    bundle = api.client.get(f"/v1/exports/{export_id}/bundle", headers=regulator)
    with tarfile.open(fileobj=io.BytesIO(bundle.content)) as archive:
        archive.extractall(tmp_path, filter="data")
    keys = api.client.get("/v1/log/public-key", headers=regulator).text
    directory = tmp_path / f"export-{export_id}"
    assert verify_bundle(directory, keys).full
    assert (directory / "consistency.json").exists()
