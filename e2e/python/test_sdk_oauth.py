"""End-to-end: the official MCP Python SDK (`mcp`), as a real client, against the
real Bridgekeeper binary.

The SDK's own OAuth support (`mcp.client.auth.OAuthClientProvider`) does
discovery (RFC 9728 + RFC 8414), dynamic client registration (RFC 7591), PKCE,
the code exchange and the scope step-up on 403 `insufficient_scope` itself; this
script only plays the person at the browser (sign-up, login and consent pages
over HTTP with a cookie jar, in the provider's `redirect_handler`) and checks
what comes back.

Run with e2e/python/run.sh. Plain asyncio, no test framework: each test prints
PASS/FAIL, and the exit status is non-zero if any failed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from bkserver import Server, start_server
from browser import Browser, CheckFailed, authorize_in_browser, check, sign_up

READ = "universal-mcp-read"
READ_WRITE = "universal-mcp-read-write"
# A loopback redirect URI (RFC 8252 §7.3). Nothing listens there: the browser
# reads the code from the Location header of the consent page's 303.
REDIRECT_URI = "http://127.0.0.1:53682/callback"
TEST_TIMEOUT_S = 90


def rand() -> str:
    return secrets.token_hex(6)


class MemoryStorage(TokenStorage):
    """In-memory `TokenStorage`; remembers every token set saved."""

    def __init__(self, tokens: OAuthToken | None = None, client_info: OAuthClientInformationFull | None = None):
        self.tokens = tokens
        self.client_info = client_info
        self.saved_tokens: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.saved_tokens.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class Exchange:
    method: str
    url: str
    status: int
    www_authenticate: str | None
    body: bytes = b""


@dataclass
class Harness:
    """One OAuthClientProvider whose "browser" is driven over HTTP, plus a log of the
    HTTP exchanges made through the SDK's httpx2 client (auth sub-requests included)."""

    issuer: str
    email: str
    password: str
    browser: Browser
    log: list[Exchange] = field(default_factory=list)
    authorization_urls: list[str] = field(default_factory=list)
    outcomes: list[Any] = field(default_factory=list)
    _pending: list[AuthorizationCodeResult] = field(default_factory=list)

    async def redirect_handler(self, authorization_url: str) -> None:
        self.authorization_urls.append(authorization_url)
        outcome = await authorize_in_browser(
            self.browser,
            authorization_url,
            issuer=self.issuer,
            email=self.email,
            password=self.password,
            redirect_uri=REDIRECT_URI,
        )
        self.outcomes.append(outcome)
        q = parse_qs(urlsplit(outcome.callback_url).query)
        check("error" not in q, f"no error in the callback: {outcome.callback_url}")
        check(q.get("code"), f"callback carries a code: {outcome.callback_url}")
        check(q.get("iss") == [self.issuer], f"callback iss (RFC 9207) equals the issuer: {outcome.callback_url}")
        sent_state = parse_qs(urlsplit(authorization_url).query)["state"][0]
        check(q.get("state") == [sent_state], "callback carries the state unchanged")
        self._pending.append(AuthorizationCodeResult(code=q["code"][0], state=q["state"][0], iss=q["iss"][0]))

    async def callback_handler(self) -> AuthorizationCodeResult:
        check(self._pending, "callback_handler called without a completed authorization")
        return self._pending.pop(0)

    async def _on_response(self, response: httpx2.Response) -> None:
        body = b""
        if response.status_code >= 400:
            body = await response.aread()
        self.log.append(
            Exchange(
                response.request.method,
                str(response.request.url),
                response.status_code,
                response.headers.get("www-authenticate"),
                body,
            )
        )

    def http_client(self, provider: OAuthClientProvider) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            auth=provider,
            timeout=httpx2.Timeout(30.0, read=300.0),
            event_hooks={"response": [self._on_response]},
        )

    def describe_log(self, since: int = 0) -> str:
        return "\n".join(
            f"  {e.method} {e.url} -> {e.status}" + (f"  [WWW-Authenticate: {e.www_authenticate}]" if e.www_authenticate else "")
            for e in self.log[since:]
        )


def whoami_info(result: Any) -> dict[str, Any]:
    """The whoami payload, from the text content (checked against structuredContent)."""
    check(not result.is_error, f"whoami failed: {result}")
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    check(texts, f"whoami returns text content: {result}")
    info = json.loads(texts[0])
    if result.structured_content is not None:
        for key in ("account_id", "email", "client_id", "scopes"):
            check(
                result.structured_content.get(key) == info.get(key),
                f"structuredContent.{key} matches the text: {result.structured_content!r} vs {info!r}",
            )
    return info


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def authorize_by_hand(
    issuer: str, browser: Browser, email: str, password: str, scope: str, registered_scope: str
) -> tuple[OAuthClientInformationFull, OAuthToken]:
    """What an earlier run of a client that asked only for `scope` left in its token
    storage: DCR, authorization code + PKCE through the pages, code exchange."""
    mcp_url = f"{issuer}/mcp"
    async with httpx2.AsyncClient(timeout=30.0) as http:
        asm = (await http.get(f"{issuer}/.well-known/oauth-authorization-server")).json()
        reg = await http.post(
            asm["registration_endpoint"],
            json={
                "client_name": "Bridgekeeper e2e (MCP Python SDK, read-only first)",
                "redirect_uris": [REDIRECT_URI],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "scope": registered_scope,
            },
        )
        check(reg.status_code == 201, f"DCR: {reg.status_code} {reg.text}")
        client_info = OAuthClientInformationFull.model_validate(reg.json())
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        url = f"{asm['authorization_endpoint']}?" + urlencode(
            {
                "response_type": "code",
                "client_id": client_info.client_id,
                "redirect_uri": REDIRECT_URI,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": mcp_url,
                "scope": scope,
            }
        )
        outcome = await authorize_in_browser(
            browser, url, issuer=issuer, email=email, password=password, redirect_uri=REDIRECT_URI
        )
        q = parse_qs(urlsplit(outcome.callback_url).query)
        check(q.get("state") == [state] and q.get("code"), f"callback: {outcome.callback_url}")
        tok = await http.post(
            asm["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": q["code"][0],
                "redirect_uri": REDIRECT_URI,
                "client_id": client_info.client_id,
                "code_verifier": verifier,
                "resource": mcp_url,
            },
        )
        check(tok.status_code == 200, f"code exchange: {tok.status_code} {tok.text}")
        token = OAuthToken.model_validate(tok.json())
        check(token.scope is None or token.scope.split() == [scope], f"granted scope is only {scope}: {token.scope!r}")
        return client_info, token


# --------------------------------------------------------------------------- tests


async def test_full_flow(server: Server, email: str, password: str) -> None:
    """(a) SDK OAuth flow for universal-mcp-read-write; whoami names account and client.

    The SDK does discovery, DCR, PKCE and the code exchange; whoami names the
    signed-in account and the DCR client."""
    issuer = server.issuer
    mcp_url = f"{issuer}/mcp"
    browser = Browser(issuer)
    h = Harness(issuer, email, password, browser)
    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Bridgekeeper e2e (MCP Python SDK)",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope=READ_WRITE,
        ),
        storage=storage,
        redirect_handler=h.redirect_handler,
        callback_handler=h.callback_handler,
    )
    try:
        async with h.http_client(provider) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    check(init.server_info.name == "bridgekeeper", f"serverInfo: {init.server_info}")

                    # What the SDK did to get there.
                    first = h.log[0]
                    check(first.method == "POST" and first.url == mcp_url and first.status == 401, f"first request is refused with 401:\n{h.describe_log()}")
                    prm = f"{issuer}/.well-known/oauth-protected-resource/mcp"
                    check(
                        re.match(r"^Bearer\s", first.www_authenticate or "") and f'resource_metadata="{prm}"' in first.www_authenticate,
                        f"401 challenge names the protected-resource metadata: {first.www_authenticate}",
                    )
                    ok = lambda m, u: any(e.method == m and e.url == u and 200 <= e.status < 300 for e in h.log)
                    check(ok("GET", prm), f"SDK fetched the protected-resource metadata:\n{h.describe_log()}")
                    check(ok("GET", f"{issuer}/.well-known/oauth-authorization-server"), f"SDK fetched the AS metadata:\n{h.describe_log()}")
                    check(ok("POST", f"{issuer}/api/v1/auth/register"), f"SDK registered via DCR:\n{h.describe_log()}")
                    check(ok("POST", f"{issuer}/api/v1/auth/token"), f"SDK exchanged the code:\n{h.describe_log()}")

                    client_info = storage.client_info
                    check(client_info and client_info.client_id, "DCR returned a client_id")
                    check(client_info.token_endpoint_auth_method == "none", f"public client: {client_info.token_endpoint_auth_method}")
                    check(client_info.client_secret is None, "a public client gets no client_secret")

                    check(len(h.authorization_urls) == 1, f"one authorization: {h.authorization_urls}")
                    q = parse_qs(urlsplit(h.authorization_urls[0]).query)
                    check(q.get("client_id") == [client_info.client_id], "authorize carries the DCR client_id")
                    check(q.get("code_challenge_method") == ["S256"], "PKCE S256")
                    check(q.get("resource") == [mcp_url], f"resource indicator: {q.get('resource')}")
                    check(READ_WRITE in q.get("scope", [""])[0].split(), f"scope asked: {q.get('scope')}")
                    check(h.outcomes[0].logged_in, "the signed-out browser had to log in")

                    tokens = storage.tokens
                    check(tokens and tokens.access_token and tokens.refresh_token, "access and refresh token saved")

                    tools = (await session.list_tools()).tools
                    names = [t.name for t in tools]
                    check("whoami" in names, f"tools/list includes whoami: {names}")

                    result = await session.call_tool("whoami", {})
                    info = whoami_info(result)
                    check(info.get("email") == email, f"whoami email is the signed-in account: {info}")
                    check(info.get("client_id") == client_info.client_id, f"whoami client_id is the DCR client: {info}")
                    check(READ_WRITE in info.get("scopes", []), f"whoami scopes: {info.get('scopes')}")
                    check(len(h.authorization_urls) == 1, "no further authorization was needed")
                    print(f"    whoami: {json.dumps(info)}")
    except BaseException:
        print(f"    HTTP exchanges through the SDK client:\n{h.describe_log()}")
        raise
    finally:
        await browser.aclose()


async def test_step_up(server: Server, email: str, password: str) -> None:
    """(b) Scope step-up: universal-mcp-read → 403 insufficient_scope → re-authorization.

    A client holding only universal-mcp-read lists tools; tools/call gets 403
    insufficient_scope; the SDK re-authorizes (consent again) and the call succeeds."""
    issuer = server.issuer
    mcp_url = f"{issuer}/mcp"
    browser = Browser(issuer)
    h = Harness(issuer, email, password, browser)

    # The Bridgekeeper 401 challenge carries scope="universal-mcp-read-write", and the SDK
    # asks for the challenged scope on a 401 (MCP scope selection), whatever its
    # client_metadata.scope says. So a client that asked only for universal-mcp-read is
    # modelled as one restarting with what an earlier read-only authorization left in
    # its TokenStorage (registration + read-only token), obtained here by hand.
    client_info, read_token = await authorize_by_hand(
        issuer, browser, email, password, scope=READ, registered_scope=f"{READ} {READ_WRITE}"
    )
    storage = MemoryStorage(tokens=read_token, client_info=client_info)
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Bridgekeeper e2e (MCP Python SDK, read-only first)",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope=READ,
        ),
        storage=storage,
        redirect_handler=h.redirect_handler,
        callback_handler=h.callback_handler,
    )
    try:
        async with h.http_client(provider) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    names = [t.name for t in (await session.list_tools()).tools]
                    check("whoami" in names, f"read-only token lists tools: {names}")
                    check(not h.authorization_urls, f"no authorization needed to list tools:\n{h.describe_log()}")
                    # (GET /mcp is the SDK's optional SSE stream; the server answers 405, which is allowed.)
                    check(
                        all(e.status < 400 for e in h.log if e.method != "GET"),
                        f"read-only requests all succeeded:\n{h.describe_log()}",
                    )

                    mark = len(h.log)
                    result = await session.call_tool("whoami", {})
                    info = whoami_info(result)
                    since = h.log[mark:]

                    # The 403 the first attempt got.
                    check(since and since[0].method == "POST" and since[0].url == mcp_url, f"tools/call went to /mcp:\n{h.describe_log(mark)}")
                    denied = since[0]
                    check(denied.status == 403, f"read-only tools/call is refused with 403:\n{h.describe_log(mark)}")
                    wa = denied.www_authenticate or ""
                    prm = f"{issuer}/.well-known/oauth-protected-resource/mcp"
                    check(re.match(r"^Bearer\s", wa), f"403 challenge is Bearer: {wa!r}")
                    check('error="insufficient_scope"' in wa, f"403 challenge error=insufficient_scope: {wa!r}")
                    check(f'scope="{READ_WRITE}"' in wa, f"403 challenge names scope {READ_WRITE}: {wa!r}")
                    check(f'resource_metadata="{prm}"' in wa, f"403 challenge names the resource metadata: {wa!r}")
                    check(json.loads(denied.body).get("error") == "insufficient_scope", f"403 body: {denied.body!r}")

                    # The SDK's step-up: a new authorization asking for the wider scope, the
                    # consent page again (consent is per exact scope set), a new token.
                    check(len(h.authorization_urls) == 1, f"the SDK re-authorized once:\n{h.describe_log(mark)}")
                    asked = parse_qs(urlsplit(h.authorization_urls[0]).query)
                    check(asked.get("client_id") == [client_info.client_id], "step-up reuses the registered client")
                    asked_scopes = asked.get("scope", [""])[0].split()
                    check(READ_WRITE in asked_scopes, f"step-up asks for {READ_WRITE}: {asked_scopes}")
                    check(READ in asked_scopes, f"step-up keeps {READ} (SEP-2350 union): {asked_scopes}")
                    check(not h.outcomes[0].logged_in, "the browser was still signed in: no login page")
                    check(READ_WRITE in h.outcomes[0].consent_scopes, f"consent page asked for the wider scope: {h.outcomes[0].consent_scopes}")
                    check(
                        any(e.method == "POST" and e.url == f"{issuer}/api/v1/auth/token" and e.status == 200 for e in since),
                        f"code exchange after step-up:\n{h.describe_log(mark)}",
                    )
                    check(since[-1].url == mcp_url and since[-1].status == 200, f"the retried tools/call succeeded:\n{h.describe_log(mark)}")
                    check(storage.tokens.access_token != read_token.access_token, "a new access token was saved")
                    check(
                        storage.tokens.scope is None or READ_WRITE in storage.tokens.scope.split(),
                        f"new token scope: {storage.tokens.scope!r}",
                    )

                    check(info.get("email") == email, f"whoami email: {info}")
                    check(info.get("client_id") == client_info.client_id, f"whoami client_id: {info}")
                    check(READ_WRITE in info.get("scopes", []), f"whoami scopes after step-up: {info.get('scopes')}")
                    print(f"    403 challenge: {wa}")
                    print(f"    step-up authorization scope: {' '.join(asked_scopes)}; new token scope: {storage.tokens.scope}")
                    print(f"    HTTP exchanges of the stepped-up tools/call:\n{h.describe_log(mark)}")
                    print(f"    whoami: {json.dumps(info)}")

                    # And the same session keeps working with the new token.
                    again = whoami_info(await session.call_tool("whoami", {}))
                    check(again.get("account_id") == info.get("account_id"), "second call, same account")
                    check(len(h.authorization_urls) == 1, "no second step-up")
    except BaseException:
        print(f"    HTTP exchanges through the SDK client:\n{h.describe_log()}")
        raise
    finally:
        await browser.aclose()


TESTS: list[Callable[[Server, str, str], Awaitable[None]]] = [test_full_flow, test_step_up]


async def main() -> int:
    import mcp  # noqa: F401  (version for the report)
    from importlib.metadata import version

    print(f"mcp {version('mcp')}, httpx2 {version('httpx2')}, Python {sys.version.split()[0]}")
    server = start_server()
    failures = 0
    try:
        print(f"server: {server.issuer}")
        email = f"e2e-py-{rand()}@example.com"
        password = f"pw-{rand()}-correct horse"
        await sign_up(server.issuer, email, password)
        for test in TESTS:
            started = time.monotonic()
            print(f"--- {test.__name__}: {(test.__doc__ or '').strip().splitlines()[0]}")
            try:
                with anyio.fail_after(TEST_TIMEOUT_S):
                    await test(server, email, password)
            except BaseException as err:  # noqa: BLE001 - report and go on
                if isinstance(err, (KeyboardInterrupt, SystemExit)):
                    raise
                failures += 1
                print(f"FAIL {test.__name__} ({time.monotonic() - started:.1f} s)")
                traceback.print_exception(err)
                print(f"--- server log (tail) ---\n{server.log_tail()}")
            else:
                print(f"PASS {test.__name__} ({time.monotonic() - started:.1f} s)")
    finally:
        server.stop()
    print(f"{len(TESTS) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
