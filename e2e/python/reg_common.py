"""What the one-run client scripts of test_registration_reuse.py share (they run in
two venvs, the SDK's and fastmcp's, so this needs only the standard library and
httpx2): a recorder of the HTTP exchanges the client library makes, the
registration answers in particular, and the one-line result each run prints for
the test to read."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import time
import traceback
from typing import Any

import httpx2

RESULT_PREFIX = "REG-RESULT "
REGISTER_PATH = "/api/v1/auth/register"
RUN_TIMEOUT_S = 90.0


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A port the OS has just handed out (how clients pick their callback port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def digest(secret: str | None) -> str | None:
    """A short fingerprint of a secret, so that results can compare them without carrying them."""
    return None if not secret else hashlib.sha256(secret.encode()).hexdigest()[:16]


class Recorder:
    """An httpx2 response event hook. The auth flow's own requests (discovery, DCR,
    the code exchange) pass through the client's hooks too, so this sees everything
    the client library sends, and keeps the body of every registration answer."""

    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []
        self.registrations: list[dict[str, Any]] = []

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        entry: dict[str, Any] = {
            "t": time.time(),
            "method": request.method,
            "url": str(request.url),
            "status": response.status_code,
        }
        if response.headers.get("www-authenticate"):
            entry["www_authenticate"] = response.headers["www-authenticate"]
        if request.method == "POST" and request.url.path == REGISTER_PATH:
            body = (await response.aread()).decode("utf-8", "replace")
            entry["body"] = body
            entry["retry_after"] = response.headers.get("retry-after")
            try:
                entry["request"] = json.loads(request.content)
            except ValueError:
                entry["request"] = request.content.decode("utf-8", "replace")
            self.registrations.append(entry)
        elif response.status_code >= 400:
            entry["body"] = (await response.aread()).decode("utf-8", "replace")[:2000]
        self.log.append(entry)

    def describe(self) -> str:
        lines = []
        for e in self.log:
            line = f"  {e['method']} {e['url']} -> {e['status']}"
            if e.get("www_authenticate"):
                line += f"  [WWW-Authenticate: {e['www_authenticate']}]"
            if e.get("body") and (e["status"] >= 400 or e["url"].endswith(REGISTER_PATH)):
                line += f"\n      body: {e['body'][:1000]}"
            lines.append(line)
        return "\n".join(lines) or "  (no HTTP exchanges)"

    def registration_summaries(self) -> list[dict[str, Any]]:
        """Each registration: when, the status, and what the answer carried (RFC 7591/7592)."""
        out = []
        for r in self.registrations:
            body: Any
            try:
                body = json.loads(r["body"])
            except ValueError:
                body = None
            fields = body if isinstance(body, dict) else {}
            out.append(
                {
                    "t": r["t"],
                    "status": r["status"],
                    "retry_after": r["retry_after"],
                    "request": r["request"],
                    "client_id": fields.get("client_id"),
                    "client_name": fields.get("client_name"),
                    "redirect_uris": fields.get("redirect_uris"),
                    "token_endpoint_auth_method": fields.get("token_endpoint_auth_method"),
                    "has_client_secret": bool(fields.get("client_secret")),
                    "registration_access_token_sha256": digest(fields.get("registration_access_token")),
                    "registration_client_uri": fields.get("registration_client_uri"),
                    "body": r["body"] if r["status"] not in (200, 201) else None,
                }
            )
        return out


def refused_registration(recorder: Recorder) -> str | None:
    """The specific failure when the registration endpoint refused, else None."""
    for r in recorder.registrations:
        if r["status"] not in (200, 201):
            retry = f" (Retry-After: {r['retry_after']})" if r.get("retry_after") else ""
            return f"dynamic client registration refused: POST {REGISTER_PATH} -> {r['status']}{retry}: {r['body'][:500]}"
    return None


def whoami_payload(structured: Any, texts: list[str]) -> dict[str, Any]:
    """The whoami tool's answer: the JSON text content, checked against structuredContent."""
    if not texts:
        raise AssertionError(f"whoami returned no text content (structuredContent: {structured!r})")
    info = json.loads(texts[0])
    if structured is not None:
        for key in ("account_id", "email", "client_id"):
            if structured.get(key) != info.get(key):
                raise AssertionError(f"whoami structuredContent.{key} differs from the text: {structured!r} vs {info!r}")
    return info


def emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)


def failure_text(err: BaseException) -> str:
    """One line for the report: the innermost non-group exception's message."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return f"{type(err).__name__}: {err}"


def print_traceback(err: BaseException) -> None:
    traceback.print_exception(err, file=sys.stdout)
