"""Formula fields: a small, safe expression language compiled once per field.

Supported: field names of the same record, parent paths through relationship names
(``vlocity_cmt__StatementId__r.vlocity_cmt__AccountId__c``), numeric constants and
``+ - * /`` with parentheses. Blank number fields count as zero (Salesforce's "treat
blank fields as zeroes" option); a formula whose inputs are all blank is blank.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

from sfsync.emulator.schema import FieldDef, Schema, SObjectType

# A compiled formula: (record, fetch parent by id) -> value
Formula = Callable[[Mapping[str, Any], Callable[[str], Mapping[str, Any] | None]], Any]

_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b if b else 0.0,
}


def _path_getter(schema: Schema, obj: SObjectType, parts: list[str], where: str) -> Callable[..., Any]:
    """A function (record, fetch) -> value that follows relationship names along ``parts``."""
    if len(parts) == 1:
        fd = obj.field(parts[0])
        if fd is None:
            raise ValueError(f"{where}: unknown field {parts[0]} on {obj.name}")
        name = fd.name
        return lambda rec, fetch: rec.get(name)
    ref = obj.relationship(parts[0])
    if ref is None:
        raise ValueError(f"{where}: unknown relationship {parts[0]} on {obj.name}")
    ref_name = ref.name
    inner = _path_getter(schema, schema.get(ref.reference_to[0]), parts[1:], where)

    def get(rec: Mapping[str, Any], fetch: Callable[[str], Mapping[str, Any] | None]) -> Any:
        parent_id = rec.get(ref_name)
        if parent_id is None:
            return None
        parent = fetch(parent_id)
        return None if parent is None else inner(parent, fetch)

    return get


def _dotted(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else head + [node.attr]
    return None


def compile_formula(schema: Schema, obj: SObjectType, fd: FieldDef) -> Formula:
    """Compile ``fd.formula`` for records of ``obj``; ValueError on anything unsupported."""
    where = f"{obj.name}.{fd.name}"
    tree = ast.parse(str(fd.formula), mode="eval").body
    numeric = fd.type in ("double", "currency", "percent", "int")

    def build(node: ast.expr) -> Callable[..., Any]:
        path = _dotted(node)
        if path is not None:
            return _path_getter(schema, obj, path, where)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            const = float(node.value)
            return lambda rec, fetch: const
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            op = _OPS[type(node.op)]
            left, right = build(node.left), build(node.right)

            def binop(rec: Mapping[str, Any], fetch: Callable[..., Any]) -> Any:
                a, b = left(rec, fetch), right(rec, fetch)
                if a is None and b is None:
                    return None
                return op(a or 0.0, b or 0.0)

            return binop
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = build(node.operand)
            return lambda rec, fetch: None if (v := inner(rec, fetch)) is None else -v
        raise ValueError(f"{where}: unsupported formula element {ast.dump(node)}")

    expr = build(tree)
    if numeric:
        scale = fd.scale

        def evaluate(rec: Mapping[str, Any], fetch: Callable[..., Any]) -> Any:
            value = expr(rec, fetch)
            return None if value is None else round(float(value), scale)

        return evaluate
    return expr


def formula_dependencies(schema: Schema, obj: SObjectType, fd: FieldDef) -> list[tuple[str, str]]:
    """(reference field on ``obj``, parent field) pairs a cross-object formula reads.

    The org uses them to refresh children when a parent field they show changes.
    """
    deps: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(str(fd.formula), mode="eval")):
        path = _dotted(node) if isinstance(node, ast.Attribute) else None
        if path and len(path) == 2:
            ref = obj.relationship(path[0])
            if ref is not None:
                parent_fd = schema.get(ref.reference_to[0]).field(path[1])
                if parent_fd is not None:
                    deps.append((ref.name, parent_fd.name))
    return deps
