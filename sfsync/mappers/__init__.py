"""Declarative mappings: biller records ↔ Salesforce records.

Public surface (everything else in this package is private)::

    mapping = load_mapping("mappings/files/line_items.yaml")          # schema-checked, positioned
    problems = validate_mapping(mapping, describer(org.describe))     # [] when valid
    compiled = compile_mapping(mapping, describe)                      # raises MappingError
    batch = compiled.apply(table, biller="files", resolve=resolver, trim_date=date(2026, 1, 1))
    batch.rows / batch.rejects / batch.skipped                        # see MappedBatch
    ordered = plan_order(mappings)                                     # parents first

See docs/mappings.md for the file format.
"""

from sfsync.mappers.batch import REJECT_COLUMNS, LookupField, MappedBatch, Resolver
from sfsync.mappers.compile import CompiledMapping, compile_mapping
from sfsync.mappers.describe import Describer, describer, from_cache_dir, write_cache
from sfsync.mappers.evaluate import Context
from sfsync.mappers.keys import MAX_KEYS_PER_QUERY, soql_where
from sfsync.mappers.loader import discover, load_mapping, load_mapping_text, load_mappings
from sfsync.mappers.models import Mapping
from sfsync.mappers.order import plan_order
from sfsync.mappers.validate import SENSITIVE_FIELDS, validate_mapping

__all__ = [
    "MAX_KEYS_PER_QUERY",
    "REJECT_COLUMNS",
    "SENSITIVE_FIELDS",
    "CompiledMapping",
    "Context",
    "Describer",
    "LookupField",
    "MappedBatch",
    "Mapping",
    "Resolver",
    "compile_mapping",
    "describer",
    "discover",
    "from_cache_dir",
    "load_mapping",
    "load_mapping_text",
    "load_mappings",
    "plan_order",
    "soql_where",
    "validate_mapping",
    "write_cache",
]
