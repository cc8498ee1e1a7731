"""Read mapping YAML keeping the line and column of every key.

PyYAML's ``compose`` gives a node tree with marks; we build plain Python values from it and
remember ``key path → (line, column)`` so that every later problem — a pydantic error, an
unknown function in a formula, a field the org does not have — can name its exact place.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sfsync.errors import MappingError
from sfsync.mappers.models import Mapping

Marks = dict[tuple[str, ...], tuple[int, int]]


def _mark(node: yaml.Node) -> tuple[int, int]:
    # PyYAML marks are 0-based; editors and compilers speak 1-based.
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(
    node: yaml.Node, loader: yaml.SafeLoader, path: tuple[str, ...], marks: Marks, problems: list[str], file: str
) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            # Keys are kept as written: a value_map key `yes` or `1` is the biller's code, not
            # YAML's boolean or integer.
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else loader.construct_object(key_node, deep=True)
            skey = str(key)
            sub = path + (skey,)
            if key in out:
                line, col = _mark(key_node)
                problems.append(f"{file}:{line}:{col}: {'.'.join(sub)}: duplicate key")
            marks[sub] = _mark(key_node)
            out[key] = _build(value_node, loader, sub, marks, problems, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            sub = path + (str(i),)
            marks[sub] = _mark(item)
            items.append(_build(item, loader, sub, marks, problems, file))
        return items
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, file: str = "<mapping>") -> tuple[Any, Marks]:
    """Parse YAML text into plain values plus the marks of every key.

    Args:
        text: The YAML document.
        file: Name used in problem messages.

    Returns:
        ``(data, marks)`` where ``marks`` maps key paths (tuples of strings; list items by
        index) to 1-based ``(line, column)``.

    Raises:
        MappingError: The text is not valid YAML, or has duplicate keys.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise MappingError(f"{file}:1:1: (root): empty mapping file")
        marks: Marks = {(): _mark(node)}
        problems: list[str] = []
        data = _build(node, loader, (), marks, problems, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else f"{file}:1:1"
        msg = f"{where}: (yaml): {exc.problem or exc}"
        raise MappingError(msg, [msg]) from None
    finally:
        loader.dispose()
    if problems:
        raise MappingError(f"{file}: {len(problems)} problem(s)", problems)
    return data, marks


def _loc_to_keys(loc: Iterable[Any]) -> tuple[str, ...]:
    # pydantic adds pseudo-steps (union member names, "[key]") that are not YAML keys.
    keys = []
    for part in loc:
        if isinstance(part, str) and (part.startswith("function-") or part in {"str", "dict[str,...]"}):
            continue
        keys.append(str(part))
    return tuple(keys)


def mapping_from_data(data: Any, marks: Marks, file: str = "<mapping>") -> Mapping:
    """Build a :class:`Mapping` from parsed YAML, turning schema errors into positioned problems.

    Raises:
        MappingError: With one ``file:line:col: key.path: message`` line per schema error.
    """
    if not isinstance(data, dict):
        msg = f"{file}:1:1: (root): a mapping file must be a YAML mapping (key: value)"
        raise MappingError(msg, [msg])
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            keys = _loc_to_keys(err["loc"])
            where = next((marks[keys[:n]] for n in range(len(keys), -1, -1) if keys[:n] in marks), (1, 1))
            text = err["msg"]
            if err["type"] == "extra_forbidden":
                text = "unknown key"
            elif err["type"] == "missing":
                text = "required key missing"
            elif err["type"] in ("literal_error", "enum"):
                text = f"{err['msg']} (got {err.get('input')!r})"
            problems.append(f"{file}:{where[0]}:{where[1]}: {'.'.join(keys) or '(root)'}: {text}")
        raise MappingError(f"{file}: {len(problems)} problem(s)", problems) from None
    mapping._path = file
    mapping._marks = marks
    return mapping


def load_mapping(path: str | Path) -> Mapping:
    """Read and schema-check one mapping file (no expression or org checks; see ``validate``).

    Args:
        path: The YAML file.

    Returns:
        The mapping, remembering its file and key positions for later messages.

    Raises:
        MappingError: Unreadable file, bad YAML or schema errors, every problem listed.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{file}:1:1: (file): cannot read: {exc.strerror or exc}"
        raise MappingError(msg, [msg]) from None
    data, marks = parse_yaml(text, file)
    return mapping_from_data(data, marks, file)


def load_mapping_text(text: str, file: str = "<mapping>") -> Mapping:
    """Like :func:`load_mapping`, from a string (tests, previews of unsaved edits)."""
    data, marks = parse_yaml(text, file)
    return mapping_from_data(data, marks, file)


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories into the mapping files they hold (``*.yaml``/``*.yml``, sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml")))
        else:
            found.append(p)
    return found


def load_mappings(paths: Iterable[str | Path]) -> list[Mapping]:
    """Load several mapping files, collecting the problems of all of them before raising."""
    mappings: list[Mapping] = []
    problems: list[str] = []
    for p in discover(paths):
        try:
            mappings.append(load_mapping(p))
        except MappingError as exc:
            problems.extend(exc.problems)
    if problems:
        raise MappingError(f"{len(problems)} problem(s) in mappings", problems)
    return mappings
