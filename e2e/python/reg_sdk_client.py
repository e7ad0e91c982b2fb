"""One run of an app built on the official MCP Python SDK (`mcp`), as a fresh
process with nothing stored: `OAuthClientProvider` with in-memory token storage
does discovery, dynamic client registration, PKCE and the code exchange; this
app's `redirect_handler` plays the person at the browser (login and consent over
HTTP with browser.py); then it calls the server's `whoami` tool over /mcp.

Like clients that pick a free callback port each run, it registers the
redirect URI http://127.0.0.1:<a free port><callback path>. Nothing needs to
listen there: the browser reads the code from the consent page's redirect.

    python reg_sdk_client.py --issuer URL --email E --password P [--run N] [--callback-path /callback]

Prints one `REG-RESULT {json}` line (see reg_common.py); exit status 0 only if
the whole flow worked and whoami names the signed-in account.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from browser import Browser, authorize_in_browser, check
from reg_common import (
    RUN_TIMEOUT_S,
    Recorder,
    emit,
    failure_text,
    free_loopback_port,
    print_traceback,
    refused_registration,
    whoami_payload,
)

CLIENT_NAME = "Bridgekeeper e2e registration reuse (MCP Python SDK)"
SCOPE = "universal-mcp-read-write"


class MemoryStorage(TokenStorage):
    """In-memory `TokenStorage`: every run starts with no registration and no tokens."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


async def run(args: argparse.Namespace, result: dict[str, Any], recorder: Recorder) -> None:
    issuer = args.issuer.rstrip("/")
    mcp_url = f"{issuer}/mcp"
    redirect_uri = f"http://127.0.0.1:{free_loopback_port()}{args.callback_path}"
    result["redirect_uri"] = redirect_uri
    browser = Browser(issuer)
    pending: list[AuthorizationCodeResult] = []
    authorizations: list[dict[str, Any]] = []
    result["authorizations"] = authorizations

    async def redirect_handler(authorization_url: str) -> None:
        outcome = await authorize_in_browser(
            browser, authorization_url, issuer=issuer, email=args.email, password=args.password, redirect_uri=redirect_uri
        )
        sent = parse_qs(urlsplit(authorization_url).query)
        q = parse_qs(urlsplit(outcome.callback_url).query)
        authorizations.append(
            {
                "client_id": sent.get("client_id", [None])[0],
                "logged_in": outcome.logged_in,
                "consent_scopes": outcome.consent_scopes,
            }
        )
        check("error" not in q, f"no error in the callback: {outcome.callback_url}")
        check(q.get("code"), f"callback carries a code: {outcome.callback_url}")
        check(q.get("state") == sent.get("state"), "callback carries the state unchanged")
        check(q.get("iss") == [issuer], f"callback iss (RFC 9207) is the issuer: {outcome.callback_url}")
        pending.append(AuthorizationCodeResult(code=q["code"][0], state=q["state"][0], iss=q["iss"][0]))

    async def callback_handler() -> AuthorizationCodeResult:
        check(pending, "callback_handler called without a completed authorization")
        return pending.pop(0)

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name=CLIENT_NAME,
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope=SCOPE,
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    try:
        async with httpx2.AsyncClient(
            auth=provider, timeout=httpx2.Timeout(30.0, read=300.0), event_hooks={"response": [recorder.on_response]}
        ) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    call = await session.call_tool("whoami", {})
                    check(not call.is_error, f"whoami failed: {call}")
                    texts = [c.text for c in call.content if getattr(c, "type", None) == "text"]
                    info = whoami_payload(call.structured_content, texts)
    finally:
        await browser.aclose()
    result["whoami"] = info
    result["client_id"] = info.get("client_id")
    result["stored_client_id"] = storage.client_info.client_id if storage.client_info else None
    check(info.get("email") == args.email, f"whoami names the signed-in account {args.email}: {info}")
    check(info.get("client_id") == result["stored_client_id"], f"whoami client_id is the registered client: {info}")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--run", type=int, default=0)
    parser.add_argument("--callback-path", default="/callback")
    args = parser.parse_args()
    recorder = Recorder()
    result: dict[str, Any] = {"kind": "sdk", "run": args.run, "ok": False, "t_start": time.time()}
    try:
        with anyio.fail_after(RUN_TIMEOUT_S):
            await run(args, result, recorder)
        check(len(recorder.registrations) == 1, f"one registration per fresh run; saw {len(recorder.registrations)}")
        result["ok"] = True
    except BaseException as err:  # noqa: BLE001 - reported in the result line
        if isinstance(err, KeyboardInterrupt):
            raise
        result["error"] = refused_registration(recorder) or failure_text(err)
        print_traceback(err)
        print(f"HTTP exchanges through the SDK client:\n{recorder.describe()}")
    result["t_end"] = time.time()
    result["registrations"] = recorder.registration_summaries()
    emit(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
