"""sfsync's requests session: the proxy environment read once per host, honoured as requests does."""

from __future__ import annotations

import pytest
import requests

from sfsync.salesforce import tls


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    tls._environ_proxies.cache_clear()


def settings(session: requests.Session, url: str) -> dict[str, object]:
    return session.merge_environment_settings(url, {}, None, None, None)  # type: ignore[no-any-return]


def test_same_proxies_and_bundle_as_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    ours, theirs = tls.Session(), requests.Session()
    for url in ("https://acme.my.salesforce.com/services/data/v61.0/limits", "https://127.0.0.1:8443/services/x"):
        assert settings(ours, url) == settings(theirs, url)
    assert settings(ours, "https://acme.my.salesforce.com/x")["proxies"]["https"] == "http://proxy.example:3128"  # type: ignore[index]
    assert "https" not in settings(ours, "https://127.0.0.1:8443/x")["proxies"]  # type: ignore[operator]
    assert settings(ours, "https://127.0.0.1:8443/x")["verify"] == "/etc/ssl/corp.pem"


def test_the_environment_is_walked_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = tls.get_environ_proxies

    def counting(url: str, no_proxy: str | None = None) -> dict[str, str]:
        calls.append(url)
        return dict(real(url, no_proxy=no_proxy))

    monkeypatch.setattr(tls, "get_environ_proxies", counting)
    s = tls.Session()
    for i in range(50):
        settings(s, f"https://acme.my.salesforce.com/services/async/61.0/job/750x/batch/{i}")
    settings(s, "https://login.salesforce.com/services/oauth2/token")
    assert len(calls) == 2
