"""REST API ``/services/data/``: versions, resources, limits, describe, sObject CRUD,
get/upsert by external ID. Collections live in :mod:`.rest_collections`, queries in
:mod:`.rest_query`; this module's ``ROUTES`` gathers all three.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from sfsync.emulator import rest_collections, rest_query
from sfsync.emulator.errors import DmlResult, SfApiError, not_found
from sfsync.emulator.http import json_response, read_json
from sfsync.emulator.ids import normalize_id
from sfsync.emulator.org import Org
from sfsync.emulator.rest_query import QueryCursors

__all__ = ["QueryCursors", "ROUTES", "record_json", "rows_from_body"]

_RELEASES = {  # API version -> release label, for the versions list
    "52.0": "Summer '21", "53.0": "Winter '22", "54.0": "Spring '22", "55.0": "Summer '22", "56.0": "Winter '23",
    "57.0": "Spring '23", "58.0": "Summer '23", "59.0": "Winter '24", "60.0": "Spring '24", "61.0": "Summer '24",
    "62.0": "Winter '25",
}


def record_json(org: Org, sobject: str, rec: dict[str, Any], version: str, fields: list[str] | None = None) -> dict[str, Any]:
    """A record in REST shape: ``attributes`` then every (or the chosen) field, nulls included."""
    obj = org.schema.get(sobject)
    names = [obj.fields[f].name if f in obj.fields else org.schema.field(obj.name, f).name for f in fields] \
        if fields else list(obj.fields)
    out: dict[str, Any] = {"attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/{rec['Id']}"}}
    for name in names:
        out[name] = rec.get(name)
    return out


def rows_from_body(body: Any) -> dict[str, Any]:
    """One JSON record body → a DML row: drops ``attributes``, flattens nested relationships.

    ``{"Account": {"AccountNumber": "A-1"}}`` becomes the column ``Account.AccountNumber``,
    as Salesforce resolves a parent by external ID inside a REST body.
    """
    if not isinstance(body, dict):
        raise SfApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of object from a non-object value")
    row: dict[str, Any] = {}
    for key, value in body.items():
        if key == "attributes":
            continue
        if isinstance(value, dict):
            for sub, subval in value.items():
                if sub != "attributes":
                    row[f"{key}.{sub}"] = subval
        elif isinstance(value, list):
            raise SfApiError(400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of {key} from START_ARRAY value")
        else:
            row[key] = value
    return row


def _json_body(request: Request) -> Any:
    media = request.mimetype
    if media and media != "application/json":
        raise SfApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"Content type '{media}' not supported")
    return read_json(request)


def _raise_row_errors(result: DmlResult) -> None:
    """A single-record REST call that failed answers 400 with the record's errors."""
    if not result.success:
        first = result.errors[0]
        status = 404 if first.status_code == "ENTITY_IS_DELETED" else 400
        body = [{"message": e.message, "errorCode": e.status_code, "fields": list(e.fields)} for e in result.errors]
        raise _RowErrors(status, body)


class _RowErrors(SfApiError):
    def __init__(self, status: int, body: list[dict[str, Any]]) -> None:
        super().__init__(status, str(body[0]["errorCode"]), str(body[0]["message"]))
        self.body = body

    def to_rest(self) -> list[dict[str, object]]:
        return list(self.body)


# -- discovery -----------------------------------------------------------------------------
def versions(request: Request, org: Org) -> Response:
    """``GET /services/data/``: the API versions this org speaks."""
    return json_response([{"label": label, "url": f"/services/data/v{v}", "version": v} for v, label in _RELEASES.items()])


def resources(request: Request, org: Org, version: str) -> Response:
    """``GET /services/data/vXX.X/``: the resources of a version."""
    base = f"/services/data/v{version}"
    names = ["sobjects", "query", "queryAll", "limits", "composite", "jobs"]
    return json_response({name: f"{base}/{name}" for name in names})


def limits(request: Request, org: Org, version: str) -> Response:
    """``GET limits/``: Max/Remaining per limit, decreasing with use."""
    return json_response(org.limits())


def describe_global(request: Request, org: Org, version: str) -> Response:
    """``GET sobjects/``."""
    return json_response(org.schema.describe_global())


def describe(request: Request, org: Org, version: str, sobject: str) -> Response:
    """``GET sobjects/{Obj}/describe``."""
    return json_response(org.describe(sobject))


def sobject_info(request: Request, org: Org, version: str, sobject: str) -> Response:
    """``GET sobjects/{Obj}/`` (basic info) and ``POST`` (create one record)."""
    obj = org.schema.get(sobject)
    if request.method == "POST":
        row = rows_from_body(_json_body(request))
        result = org.dml(obj.name, "insert", [row])[0]
        _raise_row_errors(result)
        return json_response({"id": result.id, "success": True, "errors": []}, 201)
    info = {k: v for k, v in org.describe(obj.name).items() if k not in ("fields", "childRelationships", "recordTypeInfos")}
    return json_response({"objectDescribe": info, "recentItems": []})


# -- one record ----------------------------------------------------------------------------
def _record_id(org: Org, sobject: str, raw: str) -> str | None:
    rid = normalize_id(raw)
    if rid is None or rid[:3] != org.schema.get(sobject).key_prefix:
        return None
    return rid


def record(request: Request, org: Org, version: str, sobject: str, record_id: str) -> Response:
    """``GET/PATCH/DELETE sobjects/{Obj}/{id}``."""
    obj = org.schema.get(sobject)
    rid = _record_id(org, obj.name, record_id)
    if rid is None:
        raise not_found(f"Provided external ID field does not exist or is not accessible: {record_id}")
    if request.method == "GET":
        rec = org.get(obj.name, rid, include_deleted=True)
        if rec is None:
            raise not_found()
        if rec["IsDeleted"]:
            raise SfApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        fields = [f for f in request.args.get("fields", "").split(",") if f.strip()]
        return json_response(record_json(org, obj.name, rec, version, [f.strip() for f in fields] or None))
    if request.method == "PATCH":
        row = rows_from_body(_json_body(request))
        row["Id"] = rid
        _raise_row_errors(org.dml(obj.name, "update", [row])[0])
        return Response(status=204)
    result = org.dml(obj.name, "delete", [{"Id": rid}])[0]
    if not result.success and result.errors[0].status_code == "INVALID_CROSS_REFERENCE_KEY":
        raise not_found()
    _raise_row_errors(result)
    return Response(status=204)


def by_external_id(request: Request, org: Org, version: str, sobject: str, field: str, value: str) -> Response:
    """``GET/PATCH/DELETE sobjects/{Obj}/{ExtField}/{value}``: 200/201/204, 300 when ambiguous."""
    obj = org.schema.get(sobject)
    fd = obj.field(field)
    if fd is None or not fd.id_lookup:
        raise not_found(f"Provided external ID field does not exist or is not accessible: {field}")
    if request.method == "PATCH":
        row = rows_from_body(_json_body(request))
        for key in list(row):
            if key.lower() == fd.name.lower():
                if str(row[key]) != value:
                    raise SfApiError(400, "INVALID_FIELD", f"The value of the external ID field {fd.name} in the body "
                                                           "does not match the value in the URL", [fd.name])
                del row[key]
        row[fd.name] = value
        result = org.dml(obj.name, "upsert", [row], fd.name)[0]
        if not result.success and result.errors[0].status_code == "DUPLICATE_EXTERNAL_ID":
            return _multiple(org, obj.name, fd.name, value, version)
        _raise_row_errors(result)
        return json_response({"id": result.id, "success": True, "errors": [], "created": result.created},
                             201 if result.created else 200)
    matches = org.find_by(obj.name, fd.name, value)
    if not matches:
        raise not_found()
    if len(matches) > 1:
        return _multiple(org, obj.name, fd.name, value, version)
    if request.method == "GET":
        return json_response(record_json(org, obj.name, org.get(obj.name, matches[0]["Id"]) or {}, version))
    _raise_row_errors(org.dml(obj.name, "delete", [{"Id": matches[0]["Id"]}])[0])
    return Response(status=204)


def _multiple(org: Org, sobject: str, field: str, value: str, version: str) -> Response:
    urls = [f"/services/data/v{version}/sobjects/{sobject}/{r['Id']}" for r in org.find_by(sobject, field, value)]
    return json_response(urls, 300)


_V = r"/services/data/v(?P<version>\d+\.\d)"
_OBJ = r"(?P<sobject>[A-Za-z][A-Za-z0-9_]*)"
ROUTES: list[tuple[Any, ...]] = [
    ("GET", r"/services/data/?", versions, None, None),
    ("GET", _V + r"/?", resources),
    ("GET", _V + r"/limits/?", limits),
    ("GET", _V + r"/sobjects/?", describe_global),
    ("GET", _V + rf"/sobjects/{_OBJ}/describe/?", describe),
    ("GET,POST", _V + rf"/sobjects/{_OBJ}/?", sobject_info),
    ("GET,PATCH,DELETE", _V + rf"/sobjects/{_OBJ}/(?P<record_id>[^/]+)/?", record),
    ("GET,PATCH,DELETE", _V + rf"/sobjects/{_OBJ}/(?P<field>[A-Za-z][A-Za-z0-9_]*)/(?P<value>[^/]+)/?", by_external_id),
    *rest_collections.ROUTES,
    *rest_query.ROUTES,
]
