"""The Salesforce client layer: the only place sfsync speaks HTTP to Salesforce.

Public surface::

    client = connect(settings)                      # auth from SalesforceSettings
    client.describe("vlocity_cmt__Statement__c")    # cached in memory and on disk
    client.query(soql) / client.query_frames(soql)  # REST paging, Bulk 2.0 for volume
    client.query_tables(soql)                       # the same as Arrow tables of strings
    results = client.write(sobject, "upsert", frame, external_id_field="...")
    client.calls                                    # {"rest": n, "query": n, "bulk1": n, "bulk2": n}

Row failures are :class:`RowResult` values; only job-level failures raise (see
:mod:`sfsync.errors`).
"""

from .auth import LoginFailed
from .client import QUERY_BULK_THRESHOLD, SalesforceClient, connect, records_frame
from .guard import BudgetGuard, parse_limit_info
from .load import MAX_LOCK_RETRIES, choose_api
from .results import LOCK_ERROR, RESULT_COLUMNS, RESULT_MISSING, UNPROCESSED, RowResult, frame_to_results
from .transport import ApiError, RetryPolicy

__all__ = [
    "LOCK_ERROR",
    "MAX_LOCK_RETRIES",
    "QUERY_BULK_THRESHOLD",
    "RESULT_COLUMNS",
    "RESULT_MISSING",
    "UNPROCESSED",
    "ApiError",
    "BudgetGuard",
    "LoginFailed",
    "RetryPolicy",
    "RowResult",
    "SalesforceClient",
    "choose_api",
    "connect",
    "frame_to_results",
    "parse_limit_info",
    "records_frame",
]
