"""sfsync: keeps Salesforce Communications Cloud billing data true to the billers."""

__version__ = "0.1.0"
