"""The org's schema: packaged object definitions (``objects.yaml``), overlays, describe."""

from sfsync.emulator.schema.model import FieldDef, Schema, SObjectType

__all__ = ["FieldDef", "SObjectType", "Schema"]
