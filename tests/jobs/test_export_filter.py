"""The SOQL conditions the export evaluates in memory (one query per object serves every mapping)."""

from __future__ import annotations

import pandas as pd
import pytest

from sfsync.jobs.export_filter import Condition, FilterUnsupported

ROWS = pd.DataFrame({
    "vlocity_cmt__Type__c": ["Customer Payment", "CSR Adjustment", None, "System Adjustment"],
    "vlocity_cmt__Status__c": ["Approved", "approved", "Approved", "Pending"],
    "RecordType.DeveloperName": [None, "x", None, "vlocity_cmt__Billing"],
    "Amount": ["1.5", "20", None, "3"],
})


@pytest.mark.parametrize(("where", "expected"), [
    ("vlocity_cmt__Type__c = 'Customer Payment' AND vlocity_cmt__Status__c = 'Approved'", [1, 0, 0, 0]),
    ("vlocity_cmt__Type__c IN ('CSR Adjustment', 'System Adjustment') AND vlocity_cmt__Status__c = 'Approved'",
     [0, 1, 0, 0]),  # text equality ignores case, as in SOQL
    ("vlocity_cmt__Type__c != 'CSR Adjustment'", [1, 0, 1, 1]),  # SOQL: != matches nulls
    ("vlocity_cmt__Type__c NOT IN ('CSR Adjustment')", [1, 0, 1, 1]),
    ("vlocity_cmt__Type__c != null", [1, 1, 0, 1]),
    ("NOT (Amount > 2) OR RecordType.DeveloperName = 'vlocity_cmt__Billing'", [1, 0, 1, 1]),
    ("vlocity_cmt__Type__c LIKE '%adj%'", [0, 1, 0, 1]),
    ("amount >= 3", [0, 1, 0, 1]),  # field names ignore case
])
def test_conditions_select_like_soql(where: str, expected: list[int]) -> None:
    assert Condition(where).mask(ROWS).astype(int).tolist() == expected


def test_fields_read_are_reported_for_the_query() -> None:
    c = Condition("RecordType.DeveloperName = 'vlocity_cmt__Billing' AND (Status = 'New' OR Amount < 5)")
    assert c.fields == {"RecordType.DeveloperName", "Status", "Amount"}


@pytest.mark.parametrize("where", ["CreatedDate = LAST_N_DAYS:3", "Tags__c INCLUDES ('a')",
                                   "Id IN (SELECT Id FROM Account)", "Status = 'New' AND"])
def test_what_cannot_be_evaluated_is_refused(where: str) -> None:
    with pytest.raises(FilterUnsupported):
        Condition(where)
