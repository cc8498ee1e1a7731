"""Bulk API 1.0 wire formats: jobInfo, batchInfo, results and errors in XML and JSON.

Bulk 1.0 speaks two dialects chosen by the request's ``Content-Type``: XML in the
``http://www.force.com/2009/06/asyncapi/dataload`` namespace (salesforce-bulk) and JSON
(simple-salesforce). Field order follows Salesforce's documents because some clients
read the XML positionally, and Content-Type is answered without a charset suffix because
salesforce-bulk compares it as an exact string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

NS = "http://www.force.com/2009/06/asyncapi/dataload"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>'

CT_XML = "application/xml"
CT_JSON = "application/json"
CT_CSV = "text/csv"

#: jobInfo element order, as Salesforce writes it.
JOB_FIELDS = (
    "id",
    "operation",
    "object",
    "createdById",
    "createdDate",
    "systemModstamp",
    "state",
    "externalIdFieldName",
    "concurrencyMode",
    "contentType",
    "numberBatchesQueued",
    "numberBatchesInProgress",
    "numberBatchesCompleted",
    "numberBatchesFailed",
    "numberBatchesTotal",
    "numberRecordsProcessed",
    "numberRetries",
    "apiVersion",
    "numberRecordsFailed",
    "totalProcessingTime",
    "apiActiveProcessingTime",
    "apexProcessingTime",
)
#: batchInfo element order.
BATCH_FIELDS = (
    "id",
    "jobId",
    "state",
    "stateMessage",
    "createdDate",
    "systemModstamp",
    "numberRecordsProcessed",
    "numberRecordsFailed",
    "totalProcessingTime",
    "apiActiveProcessingTime",
    "apexProcessingTime",
)


class Bulk1RequestError(Exception):
    """A Bulk 1.0 request-level error: ``<error><exceptionCode>`` with an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _xml_text(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return escape(str(value))


def _xml_doc(root: str, fields: Sequence[str], info: Mapping[str, Any]) -> str:
    parts = [XML_DECL, f'<{root}\n   xmlns="{NS}">']
    for name in fields:
        value = info.get(name)
        if value is None:
            continue
        parts.append(f"\n <{name}>{_xml_text(value)}</{name}>")
    parts.append(f"\n</{root}>")
    return "".join(parts)


def job_xml(info: Mapping[str, Any]) -> str:
    """Render a jobInfo document."""
    return _xml_doc("jobInfo", JOB_FIELDS, info)


def batch_xml(info: Mapping[str, Any]) -> str:
    """Render a batchInfo document."""
    return _xml_doc("batchInfo", BATCH_FIELDS, info)


def batch_list_xml(infos: Iterable[Mapping[str, Any]]) -> str:
    """Render a batchInfoList document."""
    inner = []
    for info in infos:
        fields = "".join(
            f"\n  <{n}>{_xml_text(info[n])}</{n}>" for n in BATCH_FIELDS if info.get(n) is not None
        )
        inner.append(f"\n <batchInfo>{fields}\n </batchInfo>")
    return f'{XML_DECL}<batchInfoList\n   xmlns="{NS}">{"".join(inner)}\n</batchInfoList>'


def json_info(fields: Sequence[str], info: Mapping[str, Any]) -> str:
    """Render jobInfo/batchInfo as JSON (same fields, numbers as numbers)."""
    return json.dumps({n: info[n] for n in fields if info.get(n) is not None})


def error_body(code: str, message: str, dialect: str) -> str:
    """Render Bulk 1.0's own error form (not REST's array) in the request's dialect."""
    if dialect == "json":
        return json.dumps({"exceptionCode": code, "exceptionMessage": message})
    return (
        f'{XML_DECL}<error\n   xmlns="{NS}">\n <exceptionCode>{escape(code)}</exceptionCode>\n'
        f" <exceptionMessage>{escape(message)}</exceptionMessage>\n</error>"
    )


def result_list_xml(result_ids: Sequence[str]) -> str:
    """Render the list of query result ids."""
    inner = "".join(f"<result>{r}</result>" for r in result_ids)
    return f'{XML_DECL}<result-list xmlns="{NS}">{inner}</result-list>'


def dml_results_xml(rows: Iterable[tuple[str | None, bool, bool, list[tuple[str, str, list[str]]]]]) -> Iterator[str]:
    """Render DML results as ``<results><result>`` elements, lazily."""
    yield f'{XML_DECL}<results xmlns="{NS}">\n'
    for rid, ok, created, errors in rows:
        parts = ["<result>"]
        parts.append(f"<id>{rid}</id>" if rid else '<id xsi:nil="true" xmlns:xsi="' + XSI + '"/>')
        for code, message, fields in errors:
            fl = "".join(f"<fields>{escape(f)}</fields>" for f in fields)
            parts.append(f"<errors>{fl}<message>{escape(message)}</message><statusCode>{code}</statusCode></errors>")
        parts.append(f"<success>{_xml_text(ok)}</success><created>{_xml_text(created)}</created></result>\n")
        yield "".join(parts)
    yield "</results>"


# ---------------------------------------------------------------- request parsing


def parse_job_request(body: bytes, dialect: str) -> dict[str, str]:
    """Read a jobInfo request body (create, close or abort) into a flat dict of strings.

    Raises:
        Bulk1RequestError: ``InvalidXML`` / ``InvalidJob`` for unreadable bodies.
    """
    if dialect == "json":
        try:
            data = json.loads(body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Bulk1RequestError("InvalidJob", f"Unable to parse Job: {exc}") from exc
        if not isinstance(data, dict):
            raise Bulk1RequestError("InvalidJob", "Unable to parse Job: expected a JSON object")
        out: dict[str, str] = {}
        for key, value in data.items():
            if key == "concurrencyMode" and isinstance(value, int) and not isinstance(value, bool):
                # simple-salesforce sends 0/1 for Parallel/Serial.
                out[key] = "Serial" if value else "Parallel"
            elif value is not None:
                out[key] = value if isinstance(value, str) else json.dumps(value)
        return out
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise Bulk1RequestError("InvalidXML", f"Unable to parse XML: {exc}") from exc
    if _local(root.tag) != "jobInfo":
        raise Bulk1RequestError("InvalidJob", f"Unable to parse Job: unexpected element {_local(root.tag)}")
    return {_local(child.tag): (child.text or "").strip() for child in root}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_json_records(body: bytes) -> list[dict[str, object]]:
    """Read a JSON batch: a list of records; nested relationship objects are flattened.

    ``{"X__r": {"Ext__c": "v"}}`` becomes ``{"X__r.Ext__c": "v"}``, the flat form the org
    takes; ``attributes`` entries are dropped.

    Raises:
        Bulk1RequestError: ``InvalidBatch`` for malformed JSON or a non-list body.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Bulk1RequestError("InvalidBatch", f"Failed to parse JSON: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise Bulk1RequestError("InvalidBatch", "Failed to parse JSON: expected an array of records")
    return [_flatten(r) for r in data]


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            out[prefix + key] = json.dumps(value)
        else:
            out[prefix + key] = value
    return out


def parse_xml_records(body: bytes) -> list[dict[str, object]]:
    """Read an XML batch (``<sObjects><sObject>...``); ``xsi:nil`` means null.

    Raises:
        Bulk1RequestError: ``InvalidBatch`` for malformed XML.
    """
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise Bulk1RequestError("InvalidBatch", f"Failed to parse XML: {exc}") from exc
    records = []
    for sobject in root:
        records.append(_xml_record(sobject, ""))
    return records


def _xml_record(element: ET.Element, prefix: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for child in element:
        name = _local(child.tag)
        nested = [c for c in child if _local(c.tag) == "sObject"]
        if nested:
            out.update(_xml_record(nested[0], f"{prefix}{name}."))
        elif child.get(f"{{{XSI}}}nil") == "true":
            out[prefix + name] = None
        else:
            out[prefix + name] = child.text or ""
    return out


def query_records_json(records: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """Render query result records as one JSON array, lazily."""
    yield "["
    first = True
    for record in records:
        yield ("" if first else ",") + json.dumps(record, default=str)
        first = False
    yield "]"


def query_records_xml(records: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """Render query result records as a ``<queryResult>`` document, lazily."""
    yield f'{XML_DECL}<queryResult xmlns="{NS}" xmlns:xsi="{XSI}">'
    for record in records:
        yield '<records xsi:type="sObject">' + _record_xml(record) + "</records>"
    yield "</queryResult>"


def _record_xml(record: Mapping[str, Any]) -> str:
    parts = []
    attributes = record.get("attributes")
    if isinstance(attributes, Mapping) and attributes.get("type"):
        parts.append(f"<type>{escape(str(attributes['type']))}</type>")
    for key, value in record.items():
        if key == "attributes":
            continue
        if value is None:
            parts.append(f'<{key} xsi:nil="true"/>')
        elif isinstance(value, Mapping):
            parts.append(f'<{key} xsi:type="sObject">{_record_xml(value)}</{key}>')
        else:
            parts.append(f"<{key}>{_xml_text(value)}</{key}>")
    return "".join(parts)
