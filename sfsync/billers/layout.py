"""The sample-data layouts (docs/sample-data.md) as entity specs.

The files and sql billers default to the *files* layout; the tmf678 biller declares the
TMF resources. Mappings are written against these names and types.
"""

from __future__ import annotations

from sfsync.billers.base import EntitySpec

S, D, INT, DT = "string", "decimal", "integer", "date"

FILES_ENTITIES: dict[str, EntitySpec] = {
    "accounts": EntitySpec(
        "accounts",
        {"account_number": S, "name": S, "parent_account_number": S, "record_type": S, "bill_cycle": INT,
         "bill_frequency": S, "email": S, "payment_type": S, "status": S},
        key=("account_number",), required=("account_number",)),
    "statements": EntitySpec(
        "statements",
        {"statement_id": S, "account_number": S, "statement_date": DT, "due_date": DT, "period_start": DT,
         "period_end": DT, "previous_balance": D, "current_charges": D, "balance_due": D,
         "overdue_amount": D, "discount_pct": D, "status": S, "currency": S, "image_url": S},
        key=("statement_id",), required=("statement_id", "account_number")),
    "line_items": EntitySpec(
        "line_items",
        {"line_item_id": S, "statement_id": S, "account_number": S, "statement_date": DT, "category": S,
         "service_type": S, "description": S, "service_id": S, "service_name": S, "amount": D,
         "quantity": INT, "uom": S, "service_start": DT, "service_end": DT, "sequence": INT},
        key=("line_item_id",), required=("line_item_id", "statement_id", "amount")),
    "balances": EntitySpec(
        "balances",
        {"account_number": S, "balance_date": DT, "balance": D, "charges": D, "credits": D,
         "last_bill_amount": D, "last_payment_amount": D, "last_payment_date": DT, "due_date": DT,
         "past_due_balance": D, "past_due_date": DT, "late_fee": D},
        key=("account_number", "balance_date"), required=("account_number", "balance")),
    "disputes": EntitySpec(
        "disputes",
        {"dispute_id": S, "account_number": S, "statement_id": S, "line_item_id": S, "amount": D,
         "status": S, "opened_date": DT, "subject": S, "description": S, "origin": S},
        key=("dispute_id",), required=("dispute_id", "account_number")),
    "usage": EntitySpec(
        "usage",
        {"usage_id": S, "account_number": S, "statement_id": S, "usage_date": DT, "usage_type": S,
         "quantity": INT, "uom": S, "rated_amount": D},
        key=("usage_id",), required=("usage_id", "account_number")),
}

# File name stem of each entity: `<stem>_<YYYYMM>.<ext>`, except accounts (`accounts.<ext>`).
FILE_STEMS = {e: e for e in FILES_ENTITIES}

# The entities the on-call refresh needs for one account, in load order.
ACCOUNT_ENTITIES = ("statements", "line_items", "balances", "disputes")


def _money(prefix: str) -> dict[str, str]:
    return {prefix: "struct", f"{prefix}.unit": S, f"{prefix}.value": D}


def _period(prefix: str) -> dict[str, str]:
    return {prefix: "struct", f"{prefix}.startDateTime": "datetime", f"{prefix}.endDateTime": "datetime"}


TMF_ENTITIES: dict[str, EntitySpec] = {
    "customerBill": EntitySpec(
        "customerBill",
        {"id": S, "href": S, "billNo": S, "billDate": "datetime", "lastUpdate": "datetime",
         **_period("billingPeriod"), "paymentDueDate": "datetime", **_money("amountDue"),
         **_money("remainingAmount"), **_money("taxIncludedAmount"), **_money("taxExcludedAmount"),
         "state": S, "billingAccount": "struct", "billingAccount.id": S, "billingAccount.name": S,
         "@type": S},
        key=("id",), required=("id",)),
    "appliedCustomerBillingRate": EntitySpec(
        "appliedCustomerBillingRate",
        {"id": S, "type": S, "date": "datetime", "name": S, "description": S, "isBilled": "boolean",
         **_money("taxExcludedAmount"), **_money("taxIncludedAmount"), "appliedTax": "list",
         "bill": "struct", "bill.id": S, "billingAccount": "struct", "billingAccount.id": S,
         "product": "struct", "product.id": S, "product.name": S, **_period("periodCoverage"),
         "characteristic": "list"},
        key=("id",), required=("id",)),
    "billingAccount": EntitySpec(
        "billingAccount",
        {"id": S, "name": S, "accountType": S, "state": S, "lastUpdate": "datetime",
         "accountBalance": "list", "relatedParty": "list", "contact": "list", "paymentType": S,
         "billStructure": "struct"},
        key=("id",), required=("id",)),
    "dispute": EntitySpec(
        "dispute",
        {"id": S, "billingAccount": "struct", "billingAccount.id": S, "bill": "struct", "bill.id": S,
         "appliedCustomerBillingRate": "struct", "appliedCustomerBillingRate.id": S, **_money("amount"),
         "status": S, "creationDate": "datetime", "subject": S, "description": S, "channel": S},
        key=("id",), required=("id",)),
}

TMF_ACCOUNT_ENTITIES = ("customerBill", "appliedCustomerBillingRate", "billingAccount", "dispute")
