"""A headless stand-in for the person's web browser, for clients that open the
authorization URL with Python's `webbrowser` (fastmcp does). Point the BROWSER
environment variable at it, in the background form webbrowser knows:

    BROWSER='/path/to/python /path/to/reg_browser.py %s &'

(`%s` is the URL; the trailing `&` makes webbrowser start it without waiting,
because the client only starts its loopback callback server after the browser
has been opened.) With the account from BK_E2E_ISSUER / BK_E2E_EMAIL /
BK_E2E_PASSWORD it signs in and approves consent (browser.py), then GETs the
final redirect to the client's loopback callback, retrying until that listens.
What happened goes to BK_E2E_BROWSER_REPORT_DIR/browser-<pid>.json. If it
fails, it still sends the client an error callback, so the client fails at once
instead of waiting for a callback that never comes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2

from browser import Browser, authorize_in_browser, check

CALLBACK_WAIT_S = 30.0


async def deliver(url: str) -> httpx2.Response:
    """GET the client's loopback callback; it may not be listening yet."""
    deadline = time.monotonic() + CALLBACK_WAIT_S
    async with httpx2.AsyncClient(timeout=10.0, follow_redirects=False) as http:
        while True:
            try:
                return await http.get(url)
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def run(authorization_url: str, report: dict[str, Any]) -> None:
    issuer = os.environ["BK_E2E_ISSUER"].rstrip("/")
    sent = parse_qs(urlsplit(authorization_url).query)
    redirect_uri = sent["redirect_uri"][0]
    report.update(client_id=sent.get("client_id", [None])[0], redirect_uri=redirect_uri)
    browser = Browser(issuer)
    try:
        outcome = await authorize_in_browser(
            browser,
            authorization_url,
            issuer=issuer,
            email=os.environ["BK_E2E_EMAIL"],
            password=os.environ["BK_E2E_PASSWORD"],
            redirect_uri=redirect_uri,
        )
    finally:
        await browser.aclose()
    report.update(logged_in=outcome.logged_in, consent_scopes=outcome.consent_scopes)
    q = parse_qs(urlsplit(outcome.callback_url).query)
    check("error" not in q and q.get("code"), f"the consent page's redirect carries a code: {outcome.callback_url}")
    check(q.get("state") == sent.get("state"), "the redirect carries the state unchanged")
    check(q.get("iss") == [issuer], f"the redirect carries iss (RFC 9207) = the issuer: {outcome.callback_url}")
    response = await deliver(outcome.callback_url)
    report.update(callback_status=response.status_code, callback_success="Authentication successful" in response.text)
    check(response.status_code == 200, f"the client's callback answered {response.status_code}: {response.text[:500]}")


async def main() -> int:
    authorization_url = sys.argv[1]
    report: dict[str, Any] = {"ok": False, "authorization_url": authorization_url, "t_start": time.time()}
    try:
        await asyncio.wait_for(run(authorization_url, report), timeout=60.0)
        report["ok"] = True
    except BaseException as err:  # noqa: BLE001 - reported
        report["error"] = f"{type(err).__name__}: {err}"
        traceback.print_exc()
        print(f"reg_browser: {report['error']}", file=sys.stderr, flush=True)
        # Let the client fail now rather than at its callback timeout.
        redirect_uri = report.get("redirect_uri")
        state = parse_qs(urlsplit(authorization_url).query).get("state", [""])[0]
        if redirect_uri:
            try:
                query = urlencode({"error": "access_denied", "error_description": f"e2e browser: {report['error']}"[:300], "state": state})
                await deliver(f"{redirect_uri}?{query}")
            except Exception:  # noqa: BLE001 - best effort
                pass
    report["t_end"] = time.time()
    out_dir = os.environ.get("BK_E2E_BROWSER_REPORT_DIR")
    if out_dir:
        path = os.path.join(out_dir, f"browser-{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(report, f)
        os.replace(path + ".tmp", path)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
