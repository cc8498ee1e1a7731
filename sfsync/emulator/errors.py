"""Salesforce-shaped errors and DML results used across the emulator.

``SfApiError`` is a request-level failure (it becomes an HTTP error response);
``SfError`` is one record-level error inside a :class:`DmlResult` (a value, never raised
out of :meth:`Org.dml`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SfError:
    """One record-level error, as Salesforce reports it.

    Attributes:
        status_code: Salesforce's code, e.g. ``REQUIRED_FIELD_MISSING``.
        message: The human message, e.g. ``Required fields are missing: [Name]``.
        fields: Field names the error concerns (may be empty).
    """

    status_code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def to_rest(self) -> dict[str, object]:
        """Render as an element of a REST error array / collection result."""
        return {"statusCode": self.status_code, "message": self.message, "fields": list(self.fields)}

    def to_bulk(self) -> str:
        """Render as Bulk API result text: ``CODE:message:Field1,Field2 --``."""
        return f"{self.status_code}:{self.message}:{','.join(self.fields)} --"


@dataclass(slots=True)
class DmlResult:
    """The outcome of one input row of :meth:`Org.dml` (results come in input order)."""

    id: str | None
    success: bool
    created: bool
    errors: list[SfError] = field(default_factory=list)

    def to_rest(self) -> dict[str, object]:
        """Render like an sObject Collections result element."""
        out: dict[str, object] = {"id": self.id, "success": self.success, "errors": [e.to_rest() for e in self.errors]}
        return out


class SfApiError(Exception):
    """A request-level error: becomes ``[{"message","errorCode","fields"}]`` with ``status``.

    Args:
        status: HTTP status code to answer with.
        code: Salesforce ``errorCode`` (``NOT_FOUND``, ``MALFORMED_QUERY``, ...).
        message: Salesforce's message text.
        fields: Optional field names.
    """

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def to_rest(self) -> list[dict[str, object]]:
        """The REST error body (always an array: simple-salesforce indexes ``[0]``)."""
        body: dict[str, object] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            body["fields"] = list(self.fields)
        return [body]


class FieldError(Exception):
    """Raised by a field converter inside DML; turned into an :class:`SfError` for the row."""

    __slots__ = ("error",)

    def __init__(self, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.error = SfError(code, message, fields or [])


def not_found(message: str = "The requested resource does not exist") -> SfApiError:
    """The 404 Salesforce answers for unknown objects, records and resources."""
    return SfApiError(404, "NOT_FOUND", message)
