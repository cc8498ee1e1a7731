"""Schema overlays, and the org's state surviving a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfsync.emulator.org import Org

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "emulator-overlay.example.yaml"


def test_example_overlay_adds_external_id_on_account() -> None:
    org = Org(schema_overlay=EXAMPLE)
    fields = {f["name"]: f for f in org.describe("Account")["fields"]}
    assert fields["Billing_Account_Number__c"]["externalId"] and fields["Billing_Account_Number__c"]["unique"]
    pa = {f["name"]: f for f in org.describe("vlocity_cmt__PaymentAdjustment__c")["fields"]}
    assert pa["sfsync_Exported__c"]["type"] == "boolean"
    acct = org.dml("Account", "upsert", [{"Name": "Acme", "Billing_Account_Number__c": "BAN-1"}],
                   "Billing_Account_Number__c")[0]
    assert acct.created
    stmt = org.dml("vlocity_cmt__Statement__c", "insert",
                   [{"Name": "S", "vlocity_cmt__AccountId__r.Billing_Account_Number__c": "ban-1"}])[0]
    assert stmt.success
    assert org.get("vlocity_cmt__Statement__c", str(stmt.id))["vlocity_cmt__AccountId__c"] == acct.id  # type: ignore[index]


def test_overlay_new_object_and_record_type(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text(
        "objects:\n"
        "  Invoice_Note__c:\n"
        "    keyPrefix: a9N\n"
        "    fields:\n"
        "      Name: {type: string, length: 80, required: true}\n"
        "      Statement__c: {type: reference, referenceTo: [vlocity_cmt__Statement__c], masterDetail: true,"
        " required: true, childRelationshipName: Invoice_Notes__r}\n"
        "  Account:\n"
        "    recordTypes: [[Partner, Partner]]\n")
    org = Org(schema_overlay=overlay)
    assert org.describe("invoice_note__c")["keyPrefix"] == "a9N"
    assert "Partner" in org.record_type_ids("Account")


def test_bad_overlay_names_the_file(tmp_path: Path) -> None:
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("objects:\n  New__c:\n    fields: {}\n")
    with pytest.raises(ValueError, match="bad.yaml.*keyPrefix"):
        Org(schema_overlay=overlay)
    overlay.write_text("objects:\n  Account:\n    fields:\n      X__c: {type: blob}\n")
    with pytest.raises(ValueError, match="unknown type"):
        Org(schema_overlay=overlay)


def test_state_survives_restart(tmp_path: Path) -> None:
    org = Org(state_dir=tmp_path)
    first = org.dml("Account", "insert", [{"Name": "Kept", "AccountNumber": "K-1"}])[0].id
    org.record_call("rest")
    gone = org.dml("Account", "insert", [{"Name": "Deleted"}])[0].id
    org.dml("Account", "delete", [{"Id": gone}])
    org.close()

    again = Org(state_dir=tmp_path)
    assert [r["Name"] for r in again.records("Account")] == ["Kept"]
    assert again.by_id(str(gone))["IsDeleted"] is True  # type: ignore[index]
    assert again.counters["rest"] == 1
    assert again.credentials == org.credentials
    assert [r["Id"] for r in again.find_by("Account", "AccountNumber", "K-1")] == [first]
    new = again.dml("Account", "insert", [{"Name": "Next"}])[0].id
    assert new not in (first, gone)  # the Id counter continued
    assert again.dml("Account", "undelete", [{"Id": gone}])[0].success
