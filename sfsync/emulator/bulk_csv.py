"""CSV in and out for the emulator's Bulk APIs, in Salesforce's exact shapes.

Uploads are parsed with the ``csv`` module in chunks, and results are written lazily
(generators of ``bytes``), because a Bulk 2.0 job may carry a million rows: holding every
parsed row, or every result line, at once would cost gigabytes.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

#: Bulk 2.0 ``columnDelimiter`` names and the characters they stand for.
DELIMITERS: dict[str, str] = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
#: Bulk 2.0 ``lineEnding`` names and the terminators they stand for.
LINE_ENDINGS: dict[str, str] = {"LF": "\n", "CRLF": "\r\n"}

#: The value that sets a field to null in Bulk CSV (an empty cell leaves it unchanged).
CSV_NULL = "#N/A"

# Result rows are written this many at a time: big enough to keep the writer in C,
# small enough that the first bytes of a large result go out at once.
_WRITE_CHUNK = 2_000


class CsvFormatError(ValueError):
    """The uploaded CSV cannot be read. ``str(exc)`` is Salesforce's job/batch message."""


@dataclass(frozen=True)
class CsvUpload:
    """An uploaded CSV document, kept as text and re-read on demand.

    Attributes:
        text: The whole document (BOM removed).
        header: Column names as sent.
        delimiter: The column delimiter character.
        line_ending: The line terminator used when writing results.
        body_offset: Where the first data row starts in ``text``.
        row_count: Number of data rows (blank lines are not rows).
    """

    text: str
    header: list[str]
    delimiter: str
    line_ending: str
    body_offset: int
    row_count: int

    def rows(self, start: int = 0) -> Iterator[list[str]]:
        """Yield the data rows as lists of strings, from row index ``start``."""
        reader = csv.reader(io.StringIO(self.text[self.body_offset :]), delimiter=self.delimiter, strict=True)
        data = (row for row in reader if row)
        return islice(data, start, None)

    def chunks(self, size: int) -> Iterator[list[list[str]]]:
        """Yield the data rows in lists of at most ``size`` rows."""
        rows = self.rows()
        while True:
            chunk = list(islice(rows, size))
            if not chunk:
                return
            yield chunk


def decode_body(body: bytes) -> str:
    """Decode an upload as UTF-8, dropping a leading byte-order mark.

    Raises:
        CsvFormatError: The bytes are not UTF-8.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CsvFormatError(f"InvalidBatch : Failed to parse CSV. Invalid UTF-8 at byte {exc.start}") from exc
    return text[1:] if text.startswith("\ufeff") else text


def _check_line_ending(text: str, line_ending: str) -> None:
    """Fail the way Bulk 2.0 does when the data's line ending is not the job's."""
    first_nl = text.find("\n")
    if first_nl < 0:
        return
    uses_crlf = first_nl > 0 and text[first_nl - 1] == "\r"
    expected_crlf = line_ending == "\r\n"
    if uses_crlf != expected_crlf:
        name = "CRLF" if expected_crlf else "LF"
        raise CsvFormatError(
            f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {name}"
        )


def parse_upload(
    text: str, *, delimiter: str = ",", line_ending: str = "\n", check_line_ending: bool = True
) -> CsvUpload:
    """Read and validate a CSV upload once: header, rectangular rows, quoting.

    Args:
        text: The decoded document.
        delimiter: The column delimiter character.
        line_ending: The job's line terminator (used for results; checked if asked).
        check_line_ending: Bulk 2.0 refuses data whose line ending differs from the job's;
            Bulk 1.0 accepts either.

    Returns:
        The upload, ready to be re-read in chunks.

    Raises:
        CsvFormatError: Empty document, malformed quoting, or a row whose number of
            columns differs from the header's.
    """
    if check_line_ending:
        _check_line_ending(text, line_ending)
    buffer = io.StringIO(text)
    reader = csv.reader(buffer, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise CsvFormatError("InvalidBatch : Failed to parse CSV header. The CSV data is empty")
        body_offset = _offset_after_first_record(text, delimiter)
        width = len(header)
        count = 0
        for row in reader:
            if not row:
                continue
            count += 1
            if len(row) != width:
                # Salesforce refuses the whole upload; the line number counts the header.
                raise CsvFormatError(
                    f"InvalidBatch : Failed to parse CSV. Found {len(row)} columns in line {reader.line_num}, "
                    f"expected {width} columns as in the header"
                )
    except csv.Error as exc:
        raise CsvFormatError(f"InvalidBatch : Failed to parse CSV. {exc} in line {reader.line_num}") from exc
    return CsvUpload(
        text=text,
        header=[h.strip() for h in header],
        delimiter=delimiter,
        line_ending=line_ending,
        body_offset=body_offset,
        row_count=count,
    )


def _offset_after_first_record(text: str, delimiter: str) -> int:
    """Index just past the header record, honouring newlines inside quoted names."""
    in_quotes = False
    for index, char in enumerate(text):
        if char == '"':
            in_quotes = not in_quotes
        elif char == "\n" and not in_quotes:
            return index + 1
    return len(text)


def header_line(names: Sequence[str], delimiter: str, *, quote: bool) -> str:
    """Render a header row without its terminator (quoted or as sent)."""
    if quote:
        return delimiter.join(f'"{n}"' for n in names)
    return delimiter.join(names)


def write_rows(
    header: str, rows: Iterable[Sequence[object]], *, delimiter: str = ",", line_ending: str = "\n"
) -> Iterator[bytes]:
    """Lazily render a CSV document: ``header`` as given, then every row fully quoted.

    Args:
        header: The header line without terminator (the callers mix quoted and as-sent names).
        rows: Data rows; ``None`` is written as an empty quoted cell.
        delimiter: Column delimiter.
        line_ending: Row terminator.

    Yields:
        UTF-8 encoded pieces of the document.
    """
    yield (header + line_ending).encode("utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=line_ending, quoting=csv.QUOTE_ALL)
    iterator = iter(rows)
    while True:
        chunk = list(islice(iterator, _WRITE_CHUNK))
        if not chunk:
            return
        writer.writerows(chunk)
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate(0)


def format_errors(errors: Iterable[object]) -> str:
    """Render record errors as Bulk results do: ``CODE:message:field1,field2 --``.

    Each error needs ``status_code``, ``message`` and ``fields`` attributes (``SfError``).
    """
    parts = []
    for err in errors:
        fields = ",".join(getattr(err, "fields", None) or [])
        code = getattr(err, "status_code", "UNKNOWN_EXCEPTION")
        message = getattr(err, "message", "")
        parts.append(f"{code}:{message}:{fields} --" if fields else f"{code}:{message}:--")
    return "".join(parts)


def encode_locator(offset: int) -> str:
    """An opaque query locator for the record at ``offset`` (base64, like Salesforce's)."""
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def decode_locator(locator: str) -> int | None:
    """The offset a locator stands for, or ``None`` when it is not one of ours."""
    padded = locator + "=" * (-len(locator) % 4)
    try:
        value = int(base64.b64decode(padded, validate=True).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return value if value >= 0 else None


def csv_value(value: object) -> str:
    """Render one field value as Salesforce writes it into query CSV."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)
