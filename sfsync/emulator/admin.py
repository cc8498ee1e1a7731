"""Admin endpoints under ``/__emulator/`` (no auth: the server listens on loopback only).

* ``POST /__emulator/reset`` — forget all data, counters and sessions (keeps faults).
* ``GET /__emulator/records/{Obj}[?include_deleted=true]`` — dump an object's records.
* ``GET /__emulator/counters`` — API calls by kind, records ingested, limits.
* ``GET /__emulator/faults`` / ``PUT`` (replace) / ``PATCH`` (merge) — the fault knobs.
* ``POST /__emulator/seed`` — ``{"sobject": ..., "records": [...], "externalIdField": ...}``
  inserts/upserts without spending API budget (fixtures for demos and tests).
* ``POST /__emulator/session`` — mint a fresh session token (tests, demos).
* ``POST /__emulator/flush`` — write the state file now.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from sfsync.emulator import auth
from sfsync.emulator.errors import SfApiError
from sfsync.emulator.http import json_response, read_json
from sfsync.emulator.org import Org


def reset(request: Request, org: Org) -> Response:
    """Reset the org's data, counters and sessions."""
    org.reset()
    request.environ["sfsync.app"].cursors.clear()
    return json_response({"reset": True})


def records(request: Request, org: Org, sobject: str) -> Response:
    """Every stored record of ``sobject`` (all fields, nulls included)."""
    obj = org.schema.get(sobject)
    include_deleted = request.args.get("include_deleted", "false").lower() == "true"
    rows = [{name: rec.get(name) for name in obj.fields} for rec in org.records(obj.name, include_deleted)]
    return json_response({"sobject": obj.name, "totalSize": len(rows), "records": rows})


def counters(request: Request, org: Org) -> Response:
    """Counters by kind plus the limits view."""
    with org.lock:
        data = dict(org.counters)
    return json_response({"counters": data, "limits": org.limits(), "sessions": len(org.sessions)})


def faults(request: Request, org: Org) -> Response:
    """Read (GET), replace (PUT) or merge (PATCH) the fault knobs."""
    if request.method in ("PUT", "PATCH"):
        body = read_json(request)
        if not isinstance(body, dict):
            raise SfApiError(400, "JSON_PARSER_ERROR", "a faults document is a JSON object")
        try:
            org.faults.update(body, replace=request.method == "PUT")
        except (ValueError, TypeError) as exc:
            raise SfApiError(400, "INVALID_FIELD", str(exc)) from None
    return json_response(org.faults.to_dict())


def seed(request: Request, org: Org) -> Response:
    """Insert or upsert fixture records without touching counters or the API budget."""
    body = read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("records"), list) or not body.get("sobject"):
        raise SfApiError(400, "JSON_PARSER_ERROR", "expected {\"sobject\": ..., \"records\": [...]}")
    ext = body.get("externalIdField")
    results = org.dml(str(body["sobject"]), "upsert" if ext else "insert", body["records"], ext)
    return json_response([{**r.to_rest(), "created": r.created} for r in results])


def session(request: Request, org: Org) -> Response:
    """A fresh session token for the admin user."""
    return json_response({"access_token": auth.new_session(org, source="admin"),
                          "instance_url": request.host_url.rstrip("/")})


def flush(request: Request, org: Org) -> Response:
    """Write the state file now (no-op without a state dir)."""
    org._dirty = True
    org.flush()
    return json_response({"flushed": org.state_dir is not None})


ROUTES: list[tuple[Any, ...]] = [
    ("POST", r"/__emulator/reset", reset, None, None),
    ("GET", r"/__emulator/records/(?P<sobject>[A-Za-z][A-Za-z0-9_]*)", records, None, None),
    ("GET", r"/__emulator/counters", counters, None, None),
    ("GET,PUT,PATCH", r"/__emulator/faults", faults, None, None),
    ("POST", r"/__emulator/seed", seed, None, None),
    ("POST", r"/__emulator/session", session, None, None),
    ("POST", r"/__emulator/flush", flush, None, None),
]
