"""One run of a fastmcp client app, as a fresh process with nothing stored:

    async with Client(StreamableHttpTransport(f"{issuer}/mcp", auth="oauth", ...)) as client:
        await client.call_tool("whoami", {})

which is `Client(url, auth="oauth")` with a transport that also records the HTTP
exchanges (an httpx_client_factory with an event hook). fastmcp's `OAuth`
provider (fastmcp.client.auth.oauth) keeps tokens and the registration in memory
(its default `MemoryStore`), registers http://localhost:<free port>/callback, opens
the authorization URL with `webbrowser.open` and serves that callback itself.
BROWSER points webbrowser at reg_browser.py, which plays the person at the
browser and then calls the callback.

    python reg_fastmcp_client.py --issuer URL --email E --password P [--run N]

Prints one `REG-RESULT {json}` line (see reg_common.py); exit status 0 only if
the whole flow worked and whoami names the signed-in account.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx2

HERE = Path(__file__).resolve().parent

from browser import check  # noqa: E402
from reg_common import (  # noqa: E402
    RUN_TIMEOUT_S,
    Recorder,
    emit,
    failure_text,
    print_traceback,
    refused_registration,
    whoami_payload,
)


def use_headless_browser(report_dir: str, issuer: str, email: str, password: str) -> None:
    """Before fastmcp first calls webbrowser (which reads BROWSER once, lazily)."""
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'reg_browser.py'))} %s &"
    check(os.pathsep not in command, f"webbrowser splits BROWSER at {os.pathsep!r}; the paths must not contain it: {command}")
    os.environ.update(
        BROWSER=command,
        BK_E2E_BROWSER_REPORT_DIR=report_dir,
        BK_E2E_ISSUER=issuer,
        BK_E2E_EMAIL=email,
        BK_E2E_PASSWORD=password,
    )


async def browser_reports(report_dir: str, wait_s: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait_s
    while True:
        paths = sorted(glob.glob(os.path.join(report_dir, "browser-*.json")))
        if paths or time.monotonic() > deadline:
            return [json.loads(Path(p).read_text()) for p in paths]
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace, result: dict[str, Any], recorder: Recorder, report_dir: str) -> None:
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    issuer = args.issuer.rstrip("/")

    def http_client_factory(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
        **kwargs: Any,  # the transport also passes follow_redirects=True
    ) -> httpx2.AsyncClient:
        # What fastmcp builds without a factory (mcp's create_mcp_http_client), plus the recorder.
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(30.0, read=300.0),
            auth=auth,
            event_hooks={"response": [recorder.on_response]},
            **kwargs,
        )

    transport = StreamableHttpTransport(f"{issuer}/mcp", auth="oauth", httpx_client_factory=http_client_factory)
    result["oauth_provider"] = f"{type(transport.auth).__module__}.{type(transport.auth).__qualname__}"
    async with Client(transport) as client:
        call = await client.call_tool("whoami", {})
    texts = [c.text for c in call.content if getattr(c, "type", None) == "text"]
    info = whoami_payload(call.structured_content, texts)
    result["whoami"] = info
    result["client_id"] = info.get("client_id")
    check(info.get("email") == args.email, f"whoami names the signed-in account {args.email}: {info}")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--run", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Using in-memory token storage")  # in memory on purpose
    report_dir = tempfile.mkdtemp(prefix="bk-e2e-reg-browser-")
    use_headless_browser(report_dir, args.issuer.rstrip("/"), args.email, args.password)
    recorder = Recorder()
    result: dict[str, Any] = {"kind": "fastmcp", "run": args.run, "ok": False, "t_start": time.time()}
    try:
        try:
            with anyio.fail_after(RUN_TIMEOUT_S):
                await run(args, result, recorder, report_dir)
        finally:
            reports = await browser_reports(report_dir, wait_s=5.0 if "client_id" in result else 0.5)
            result["authorizations"] = [
                {k: r.get(k) for k in ("ok", "error", "client_id", "redirect_uri", "logged_in", "consent_scopes", "callback_status")}
                for r in reports
            ]
        check(len(reports) == 1, f"the browser was opened once; reports: {reports}")
        check(reports[0].get("ok"), f"the browser's sign-in, consent and callback worked: {reports[0]}")
        check(
            reports[0].get("client_id") == result["client_id"],
            f"whoami client_id {result['client_id']} is the client authorized in the browser ({reports[0].get('client_id')})",
        )
        result["redirect_uri"] = reports[0].get("redirect_uri")
        check(len(recorder.registrations) == 1, f"one registration per fresh run; saw {len(recorder.registrations)}")
        result["ok"] = True
    except BaseException as err:  # noqa: BLE001 - reported in the result line
        if isinstance(err, KeyboardInterrupt):
            raise
        browser_errors = [r["error"] for r in result.get("authorizations", []) if r.get("error")]
        result["error"] = (
            refused_registration(recorder)
            or (f"the headless browser failed: {browser_errors[0]}" if browser_errors else None)
            or failure_text(err)
        )
        print_traceback(err)
        print(f"HTTP exchanges through fastmcp's client:\n{recorder.describe()}")
    result["t_end"] = time.time()
    result["registrations"] = recorder.registration_summaries()
    emit(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
