"""Fixtures for the Salesforce layer's unit tests: ``responses`` with Salesforce's shapes."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import responses
from pydantic import SecretStr

from sfsync.config import SalesforceSettings
from sfsync.salesforce import BudgetGuard, RetryPolicy, SalesforceClient, connect

LOGIN = "https://login.example.com"
INSTANCE = "https://org.example.com"
DATA = f"{INSTANCE}/services/data/v59.0"
ASYNC = f"{INSTANCE}/services/async/59.0"


@pytest.fixture
def settings(tmp_path: Path) -> SalesforceSettings:
    return SalesforceSettings(
        login_url=LOGIN,
        username="loader@example.com",
        password=SecretStr("pw-secret"),
        security_token=SecretStr("tok-secret"),
        client_id="cid",
        client_secret=SecretStr("csecret"),
        describe_cache_dir=tmp_path / "describe",
    )


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def policy(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps.append, base_delay=0.01)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def add_login(rsps: responses.RequestsMock, *tokens: str) -> list[dict[str, str]]:
    """Answer the OAuth token endpoint with ``tokens`` in turn; return the posted forms."""
    forms: list[dict[str, str]] = []
    queue = list(tokens) or ["T1"]

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        from urllib.parse import parse_qsl

        forms.append(dict(parse_qsl(request.body)))
        token = queue.pop(0) if len(queue) > 1 else queue[0]
        return 200, {}, json.dumps({"access_token": token, "instance_url": INSTANCE, "id": "x", "token_type": "Bearer"})

    rsps.add_callback(responses.POST, f"{LOGIN}/services/oauth2/token", callback=answer)
    return forms


def add_limits(rsps: responses.RequestsMock, used: int = 100, maximum: int = 15000) -> None:
    rsps.add(
        responses.GET,
        f"{DATA}/limits/",
        json={"DailyApiRequests": {"Max": maximum, "Remaining": maximum - used}},
        headers={"Sforce-Limit-Info": f"api-usage={used}/{maximum}"},
    )


@pytest.fixture
def client(rsps: responses.RequestsMock, settings: SalesforceSettings, policy: RetryPolicy) -> SalesforceClient:
    add_login(rsps)
    add_limits(rsps)
    return connect(settings, policy=policy, guard=BudgetGuard(0.5))


def rows_of(body: bytes | str) -> list[dict[str, str]]:
    text = body.decode() if isinstance(body, bytes) else body
    return list(csv.DictReader(io.StringIO(text)))


def to_csv(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


Decide = Callable[[dict[str, str], int], tuple[bool, str, bool, str]]


@dataclass
class FakeBulk2:
    """Bulk API 2.0 ingest over ``responses``: results shuffled, failures without Id.

    ``decide(row, attempt)`` returns ``(success, id, created, error)`` for a row; ``attempt``
    counts how many jobs saw the same row before (for lock retries).
    """

    rsps: responses.RequestsMock
    decide: Decide
    polls_in_progress: int = 1
    fail_jobs: int = 0  # the first N jobs end Failed without processing anything
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    uploads: list[list[dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        base = re.escape(f"{DATA}/jobs/ingest")
        self.rsps.add_callback(responses.POST, re.compile(base + "$"), callback=self._create)
        self.rsps.add_callback(responses.PUT, re.compile(base + r"/(\w+)/batches$"), callback=self._upload)
        self.rsps.add_callback(responses.PATCH, re.compile(base + r"/(\w+)$"), callback=self._close)
        self.rsps.add_callback(responses.GET, re.compile(base + r"/(\w+)$"), callback=self._status)
        self.rsps.add_callback(responses.GET, re.compile(base + r"/(\w+)/(successfulResults|failedResults|unprocessedrecords)$"), callback=self._results)

    def _job(self, request: Any) -> dict[str, Any]:
        job_id = request.url.split("/jobs/ingest/")[1].split("/")[0]
        return self.jobs[job_id]

    def _create(self, request: Any) -> tuple[int, dict[str, str], str]:
        spec = json.loads(request.body)
        job_id = f"750{len(self.jobs):012d}"
        self.jobs[job_id] = {"id": job_id, "state": "Open", "spec": spec, "rows": [], "polls": 0, "header": []}
        return 200, {"Sforce-Limit-Info": "api-usage=200/15000"}, json.dumps({"id": job_id, "state": "Open", "object": spec["object"]})

    def _upload(self, request: Any) -> tuple[int, dict[str, str], str]:
        job = self._job(request)
        assert request.headers["Content-Type"].startswith("text/csv")
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        job["header"] = next(csv.reader(io.StringIO(body.decode().split("\n", 1)[0])))
        job["rows"] = rows_of(body)
        self.uploads.append(job["rows"])
        return 201, {}, ""

    def _close(self, request: Any) -> tuple[int, dict[str, str], str]:
        job = self._job(request)
        assert json.loads(request.body) == {"state": "UploadComplete"}
        job["state"] = "UploadComplete"
        self._process(job)
        return 200, {}, json.dumps({"id": job["id"], "state": "UploadComplete"})

    def _process(self, job: dict[str, Any]) -> None:
        job["ok"], job["bad"], job["skipped"] = [], [], []
        if self.fail_jobs > 0:
            self.fail_jobs -= 1
            job["final"] = "Failed"
            job["skipped"] = list(job["rows"])
            return
        job["final"] = "JobComplete"
        for row in job["rows"]:
            key = json.dumps(row, sort_keys=True)
            attempt = self.seen.get(key, 0)
            self.seen[key] = attempt + 1
            ok, rid, created, error = self.decide(row, attempt)
            (job["ok"] if ok else job["bad"]).append((row, rid, created, error))

    def _status(self, request: Any) -> tuple[int, dict[str, str], str]:
        job = self._job(request)
        job["polls"] += 1
        state = "InProgress" if job["polls"] <= self.polls_in_progress else job["final"]
        info = {"id": job["id"], "state": state}
        if state != "InProgress":
            info["numberRecordsProcessed"] = len(job["ok"]) + len(job["bad"])
            info["numberRecordsFailed"] = len(job["bad"])
            if state == "Failed":
                info["errorMessage"] = "InternalServerError: try again"
        return 200, {}, json.dumps(info)

    def _results(self, request: Any) -> tuple[int, dict[str, str], str]:
        job = self._job(request)
        kind = request.url.rsplit("/", 1)[1]
        header = job["header"]
        shuffled = random.Random(7)
        if kind == "successfulResults":
            rows = [[rid, "true" if created else "false"] + [r[c] for c in header] for r, rid, created, _ in job["ok"]]
            shuffled.shuffle(rows)
            return 200, {"Content-Type": "text/csv"}, to_csv(["sf__Id", "sf__Created", *header], rows)
        if kind == "failedResults":
            rows = [["", err] + [r[c] for c in header] for r, _, _, err in job["bad"]]
            shuffled.shuffle(rows)
            return 200, {"Content-Type": "text/csv"}, to_csv(["sf__Id", "sf__Error", *header], rows)
        rows = [[r[c] for c in header] for r in job["skipped"]]
        return 200, {"Content-Type": "text/csv"}, to_csv(header, rows)


def all_ok(row: dict[str, str], attempt: int) -> tuple[bool, str, bool, str]:
    return True, "a0X" + row.get("Ext__c", "x").rjust(12, "0"), True, ""
