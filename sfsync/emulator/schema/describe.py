"""Render the schema in Salesforce's describe JSON shapes (describeGlobal, sObject describe)."""

from __future__ import annotations

from typing import Any

from sfsync.emulator.schema.model import FieldDef, Schema, SObjectType

API_VERSION = "59.0"
MASTER_RECORD_TYPE_ID = "012000000000000AAA"  # the same in every org

_SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "date": "xsd:date",
    "datetime": "xsd:dateTime", "double": "xsd:double", "currency": "xsd:double", "percent": "xsd:double",
    "int": "xsd:int",
}


def _urls(obj: SObjectType) -> dict[str, str]:
    base = f"/services/data/v{API_VERSION}/sobjects/{obj.name}"
    return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}


def _global_entry(obj: SObjectType) -> dict[str, Any]:
    editable = obj.name != "RecordType"
    return {
        "activateable": False, "createable": editable, "custom": obj.custom, "customSetting": obj.custom_setting,
        "deepCloneable": False, "deletable": editable, "deprecatedAndHidden": False, "feedEnabled": False,
        "hasSubtypes": False, "isInterface": False, "isSubtype": False, "keyPrefix": obj.key_prefix,
        "label": obj.label, "labelPlural": obj.label_plural, "layoutable": not obj.custom_setting,
        "mergeable": obj.name == "Account", "mruEnabled": not obj.custom_setting, "name": obj.name,
        "queryable": True, "replicateable": True, "retrieveable": True, "searchable": not obj.custom_setting,
        "triggerable": True, "undeletable": editable, "updateable": editable, "urls": _urls(obj),
    }


def describe_global(schema: Schema) -> dict[str, Any]:
    """The ``describeGlobal`` body: encoding, batch size and one entry per object."""
    return {
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": [_global_entry(obj) for obj in sorted(schema.objects.values(), key=lambda o: o.name)],
    }


def _describe_field(obj: SObjectType, fd: FieldDef) -> dict[str, Any]:
    nillable = not fd.required and fd.type != "boolean" and fd.name not in (
        "Id", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp", "IsDeleted")
    if fd.auto_number:
        nillable = False
    text = fd.type not in _SOAP_TYPES
    is_number = fd.type in ("double", "currency", "percent")
    defaulted = fd.default is not None or fd.type == "boolean" or fd.system or fd.auto_number is not None \
        or fd.name == "OwnerId"
    return {
        "aggregatable": fd.type not in ("textarea", "encryptedstring"),
        "autoNumber": fd.auto_number is not None,
        "byteLength": fd.length * 3 if text else (18 if fd.type in ("id", "reference") else 0),
        "calculated": fd.calculated,
        "calculatedFormula": fd.formula,
        "cascadeDelete": fd.master_detail,
        "caseSensitive": fd.case_sensitive,
        "createable": fd.writable_on_insert,
        "custom": fd.name.endswith("__c"),
        "defaultValue": fd.default if fd.type == "boolean" or fd.default is not None else None,
        "defaultValueFormula": None,
        "defaultedOnCreate": defaulted,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": fd.precision if fd.type == "int" else 0,
        "encrypted": fd.type == "encryptedstring",
        "externalId": fd.external_id,
        "extraTypeInfo": "richtextarea" if fd.html else None,
        "filterable": fd.type not in ("textarea",),
        "groupable": fd.type not in ("textarea", "double", "currency", "percent", "datetime"),
        "htmlFormatted": fd.html,
        "idLookup": fd.id_lookup,
        "label": fd.label,
        "length": fd.length if text else (18 if fd.type in ("id", "reference") else 0),
        "name": fd.name,
        "nameField": fd.name_field,
        "nillable": nillable,
        "permissionable": nillable and not fd.calculated and not fd.system,
        "picklistValues": [
            {"active": True, "defaultValue": v == fd.default, "label": v, "validFor": None, "value": v}
            for v in fd.picklist
        ],
        "precision": fd.precision if is_number else 0,
        "referenceTargetField": None,
        "referenceTo": list(fd.reference_to),
        "relationshipName": fd.relationship_name,
        "relationshipOrder": (0 if fd.master_detail else None),
        "restrictedPicklist": fd.restricted,
        "scale": fd.scale if is_number else 0,
        "soapType": _SOAP_TYPES.get(fd.type, "xsd:string"),
        "sortable": fd.type not in ("textarea",),
        "type": fd.type,
        "unique": fd.unique,
        "updateable": fd.writable_on_update,
        "writeRequiresMasterRead": fd.master_detail,
    }


def describe_sobject(schema: Schema, obj: SObjectType, record_type_ids: dict[str, str]) -> dict[str, Any]:
    """One object's describe body.

    Args:
        schema: The whole schema (for child relationships).
        obj: The object to describe.
        record_type_ids: Developer name → RecordType Id of this object's record types in the org.
    """
    children = []
    for child, fd in schema.child_relationships(obj.name):
        children.append({
            "cascadeDelete": fd.master_detail,
            "childSObject": child.name,
            "deprecatedAndHidden": False,
            "field": fd.name,
            "junctionIdListNames": [],
            "junctionReferenceTo": [],
            "relationshipName": fd.child_relationship_name,
            "restrictedDelete": fd.delete_constraint == "Restrict",
        })
    rt_infos = []
    for i, (dev, label) in enumerate(obj.record_types):
        rid = record_type_ids.get(dev)
        if rid:
            rt_infos.append({
                "active": True, "available": True, "defaultRecordTypeMapping": i == 0, "developerName": dev,
                "master": False, "name": label, "recordTypeId": rid,
                "urls": {"layout": f"/services/data/v{API_VERSION}/sobjects/{obj.name}/describe/layouts/{rid}"},
            })
    rt_infos.append({
        "active": True, "available": True, "defaultRecordTypeMapping": not rt_infos, "developerName": "Master",
        "master": True, "name": "Master", "recordTypeId": MASTER_RECORD_TYPE_ID,
        "urls": {"layout": f"/services/data/v{API_VERSION}/sobjects/{obj.name}/describe/layouts/{MASTER_RECORD_TYPE_ID}"},
    })
    body = _global_entry(obj)
    body.update({
        "actionOverrides": [],
        "childRelationships": children,
        "compactLayoutable": True,
        "fields": [_describe_field(obj, fd) for fd in obj.fields.values()],
        "listviewable": None,
        "lookupLayoutable": None,
        "namedLayoutInfos": [],
        "networkScopeFieldName": None,
        "recordTypeInfos": rt_infos,
        "searchLayoutable": True,
        "supportedScopes": [{"label": "All " + obj.label_plural.lower(), "name": "everything"}],
    })
    return body
