"""The plain way: what an admin writes by hand to load line items (pandas + simple-salesforce).

Read the biller's line-item files with pandas, map the columns like ``mappings/files/line_items.yaml``,
and hand the CSV to simple-salesforce's Bulk 2.0 upsert. No diff, no state, no row-level
results: the baseline ``bench/load.py`` compares sfsync with.

Usage: ``python bench/plain_bulk2.py DATA_DIR CONNECTION_JSON``
"""

from __future__ import annotations

import glob
import json
import sys
import tempfile

import pandas as pd
import requests
from simple_salesforce import Salesforce

CATEGORY = {"REC": "Service", "USG": "Usage", "OTC": "Billed", "EQP": "Equipment", "CRD": "Billed", "MSG": "Message"}
SERVICE = {"VOICE": "Voice", "DATA": "Data", "SMS": "Message"}


def main() -> None:
    data_dir, connection = sys.argv[1], sys.argv[2]
    conn = json.load(open(connection))
    session = requests.Session()
    session.verify = conn["ca_bundle"]
    session.trust_env = False
    sf = Salesforce(instance_url=conn["instance_url"], session_id=conn["access_token"], session=session)

    df = pd.concat([pd.read_csv(f, dtype=str) for f in sorted(glob.glob(f"{data_dir}/line_items_*.csv"))])
    out = pd.DataFrame({
        "vlocity_cmt__ExternalID__c": "acme:" + df["line_item_id"],
        "vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c": "acme:" + df["statement_id"],
        "vlocity_cmt__StatementDate__c": df["statement_date"],
        "vlocity_cmt__Category__c": df["category"].map(CATEGORY),
        "vlocity_cmt__ServiceType__c": df["service_type"].map(SERVICE),
        "vlocity_cmt__Type__c": df["amount"].astype(float).lt(0).map({True: "Credit", False: "Charge"}),
        "vlocity_cmt__Subtype__c": df["category"],
        "vlocity_cmt__ServiceName__c": df["service_name"].str[:255],
        "vlocity_cmt__ServiceID__c": df["service_id"],
        "vlocity_cmt__StatementGroup__c": df["description"].str[:255],
        "vlocity_cmt__CurrencyAmount__c": df["amount"],
        "vlocity_cmt__Usage__c": df["quantity"],
        "vlocity_cmt__UOM__c": df["uom"],
        "vlocity_cmt__ServiceStartDate__c": df["service_start"],
        "vlocity_cmt__ServiceEndDate__c": df["service_end"],
        "vlocity_cmt__Sequence__c": df["sequence"],
        "vlocity_cmt__Recurring__c": (df["category"] == "REC").map({True: "Y", False: "N"}),
        "vlocity_cmt__OneTime__c": df["category"].isin(["OTC", "EQP"]).map({True: "Y", False: "N"}),
    })
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
        out.to_csv(fh, index=False)
    # batch_size: without it simple-salesforce sizes the upload by a byte estimate that leaves out
    # quotes, and a 1M-row file fails with "exceeds the max file size accepted by Bulk V2 (100 MB)".
    results = sf.bulk2.vlocity_cmt__StatementLineItem__c.upsert(
        csv_file=fh.name, external_id_field="vlocity_cmt__ExternalID__c", batch_size=250_000, wait=1)
    done = sum(int(r["numberRecordsProcessed"]) for r in results)
    failed = sum(int(r["numberRecordsFailed"]) for r in results)
    print("RESULT " + json.dumps({"rows": len(out), "processed": done, "failed": failed}))


if __name__ == "__main__":
    main()
