"""Schemathesis over the whole REST API document (`GET /openapi.json`) of the real binary.

Starts `bridgekeeper serve` (fresh data directory, loopback, an `api_key` provider and an `oauth2`
one so that connecting works without any network), signs a person up through the sign-up and
sign-in pages, creates — signed in — a personal access token holding every scope a token may hold
(`POST /api/v1/auth/pat`), and an operator token with `bridgekeeper admin token create`; then runs
schemathesis over every operation of the document with the checks below, each operation
authenticated by the scheme its security requirement names (`schemathesis.toml`). Secrets never
reach the output: tokens travel in the environment, and schemathesis sanitizes what it prints.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))
from bkserver import server_binary, start_server  # noqa: E402

CHECKS = os.environ.get("BK_E2E_OPENAPI_CHECKS") or ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)

# An api_key provider (connecting it stores a connection at once) and Google with a client id (an
# oauth2 flow starts and answers its authorization URL): initiate, get, refresh and delete then reach
# real connections, and nothing leaves the machine.
CATALOG = """
[acme]
name = "Acme CRM"
description = "Deals and contacts"
auth = "api_key"
api_key = { label = "Acme API token" }
tools = { kind = "http" }
"""


def csrf(html: str) -> str:
    m = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    if not m:
        raise RuntimeError("no csrf_token on the page")
    return m.group(1)


def sign_up(issuer: str, email: str, password: str) -> requests.Session:
    """A browser: signs up, then signs in (sign-up does not sign in)."""
    s = requests.Session()
    page = s.get(urljoin(issuer, "/signup"), timeout=10).text
    r = s.post(
        urljoin(issuer, "/signup"),
        data={"csrf_token": csrf(page), "next": "/", "email": email, "password": password},
        allow_redirects=False,
        timeout=30,
    )
    if r.status_code != 303:
        raise RuntimeError(f"sign-up answered {r.status_code}")
    page = s.get(urljoin(issuer, "/login"), timeout=10).text
    r = s.post(
        urljoin(issuer, "/login"),
        data={"csrf_token": csrf(page), "next": "/", "email": email, "password": password},
        allow_redirects=False,
        timeout=30,
    )
    if r.status_code != 303:
        raise RuntimeError(f"sign-in answered {r.status_code}")
    return s


class ScriptedLlm:
    """`node e2e/lib/scripted-llm.mjs` as a child process (its default script: every answer "ok")."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", str(HERE.parent / "lib" / "scripted-llm.mjs"), "--no-record"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        try:
            self.base_url = json.loads(line)["baseUrl"]
        except (ValueError, KeyError) as e:
            self.stop()
            raise RuntimeError(f"the scripted model did not start: {line!r}") from e

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_scripted_llm() -> ScriptedLlm:
    return ScriptedLlm()


def main() -> int:
    schemathesis = HERE / ".venv" / "bin" / "schemathesis"
    work = tempfile.TemporaryDirectory(prefix="bk-e2e-openapi-")
    catalog = Path(work.name) / "providers.toml"
    catalog.write_text(CATALOG)
    # A model (e2e/lib/scripted-llm.mjs, answering "ok" to everything) so that LLM access and agent
    # chat reach their billed paths instead of answering 503 "no language model is configured".
    llm = start_scripted_llm()
    try:
        server = start_server(
            {
                "BRIDGEKEEPER_LLM__MODELS": (
                    f'[{{id="e2e-model", base_url="{llm.base_url}", api_key_env="BK_E2E_SCRIPTED_LLM_KEY", '
                    "prompt_credits_per_million=1000, completion_credits_per_million=1000}]"
                ),
                "BK_E2E_SCRIPTED_LLM_KEY": "sk-e2e-" + secrets.token_hex(8),
                "BRIDGEKEEPER_CREDITS__SIGNUP_GRANT": "100000000",
                "BRIDGEKEEPER_CONNECTIONS__CATALOG_FILE": str(catalog),
                "BRIDGEKEEPER_CONNECTIONS__PROVIDERS__GOOGLE__OAUTH2__CLIENT_ID": "e2e-google-client",
                "BRIDGEKEEPER_CONNECTIONS__PROVIDERS__GOOGLE__OAUTH2__CLIENT_SECRET": "e2e-google-secret",
                # Schemathesis starts many connections; the default quotas would turn later cases into 409/429.
                "BRIDGEKEEPER_LIMITS__CONNECTS_PER_MINUTE": "100000",
                "BRIDGEKEEPER_LIMITS__MAX_CONNECTIONS_PER_ACCOUNT": "100000",
                "BRIDGEKEEPER_LIMITS__MAX_CLIENTS_PER_ACCOUNT": "100000",
                "BRIDGEKEEPER_LIMITS__MAX_PATS_PER_ACCOUNT": "100000",
                # Fuzzed sign-in messages are refused, and each refusal counts against this machine; the
                # nonces schemathesis asks for are limited per machine too.
                "BRIDGEKEEPER_LIMITS__LOGIN_FAILURES_PER_SOURCE_PER_MINUTE": "100000",
                "BRIDGEKEEPER_SIWE__NONCES_PER_MINUTE": "100000",
            }
        )
    except Exception:
        llm.stop()
        raise
    status = 1
    try:
        issuer = server.issuer
        doc = requests.get(urljoin(issuer, "/openapi.json"), timeout=10).json()
        scopes = doc["components"]["schemas"]["ScopeName"]["enum"]

        browser = sign_up(issuer, f"schemathesis-{secrets.token_hex(4)}@example.com", "correct horse battery staple")
        r = browser.post(
            urljoin(issuer, "/api/v1/auth/pat"),
            json={"name": "schemathesis", "scopes": scopes, "expires_in": "never"},
            timeout=10,
        )
        if r.status_code != 201:
            raise RuntimeError(f"creating the personal access token answered {r.status_code}: {r.text}")
        pat = r.json()
        # Every scope a personal access token may carry (all but agents-all): every tenant operation.
        missing = sorted(set(scopes) - set(pat["scopes"]) - {"agents-all"})
        if missing:
            raise RuntimeError(f"the personal access token lacks {missing}")

        out = subprocess.run(
            [str(server_binary()), "admin", "token", "create", "--name", "schemathesis", "--format", "json",
             "--data-dir", server.data_dir],
            capture_output=True, text=True, timeout=60, check=True,
        )
        operator = json.loads(out.stdout)["token"]

        # A connection to look at (the fuzzed ids are random; this one is real).
        h = {"Authorization": f"Bearer {pat['token']}"}
        r = requests.post(
            urljoin(issuer, "/api/v1/connections/initiate"),
            json={"providerId": "acme", "redirectUrl": urljoin(issuer, "/connections"),
                  "providerParams": {"apiKey": "acme-key-" + secrets.token_hex(8)}},
            headers=h, timeout=10,
        )
        if r.status_code != 201:
            raise RuntimeError(f"connecting acme answered {r.status_code}: {r.text}")

        account = requests.get(urljoin(issuer, "/api/v1/account"), headers=h, timeout=10).json()
        env = {
            **os.environ,
            "BK_E2E_PAT": pat["token"],
            "BK_E2E_OPERATOR_TOKEN": operator,
            "SCHEMATHESIS_HOOKS": str(HERE / "hooks.py"),
            # What this run's credentials stand on (hooks.py keeps cases off them).
            "BK_E2E_PROTECTED_IDS": ",".join([pat["id"], pat["session_id"], account["id"]]),
            "BK_E2E_ORIGIN": issuer.rstrip("/"),
        }
        max_examples = os.environ.get("BK_E2E_OPENAPI_MAX_EXAMPLES", "100")
        cmd = [
            str(schemathesis), "--config-file", str(HERE / "schemathesis.toml"),
            "run", urljoin(issuer, "/openapi.json"),
            "--checks", CHECKS,
            "--max-examples", max_examples,
            "--seed", os.environ.get("BK_E2E_OPENAPI_SEED", "18"),
            # One worker: Hypothesis describes its strategies with `ast`, which is not thread-safe on
            # some CPython 3.11 releases ("AST constructor recursion depth mismatch" with two).
            "--workers", "1",
            "--request-timeout", "10",
            "--no-shrink",
            "--generation-database", "none",
            *os.environ.get("BK_E2E_OPENAPI_EXTRA", "").split(),
            # The live event stream never ends by itself (it answers 200 and keeps the connection
            # open), so a positive case could only time out; its refusals (401, 403) are covered by
            # the integration tests. Every other operation is fuzzed (hooks.py keeps the destructive
            # ones off this run's own token and account).
            "--exclude-path", "/api/v1/events",
        ]
        started = time.monotonic()
        # In a directory of its own: nothing of the run is left in the source tree.
        status = subprocess.run(cmd, env=env, cwd=work.name, timeout=600).returncode
        print(f"schemathesis finished in {time.monotonic() - started:.0f} s with exit code {status}")
        # The run stayed meaningful: its credentials still work at the end (hooks.py kept the
        # destructive cases off them), so no later case was a 401 by accident.
        for name, token in (("personal access token", pat["token"]), ("operator token", operator)):
            path = "/api/v1/account" if token == pat["token"] else "/api/v1/admin/accounts"
            r = requests.get(urljoin(issuer, path), headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if r.status_code != 200:
                print(f"the {name} no longer works after the run ({r.status_code})", file=sys.stderr)
                status = 1
        # No secret in what the server logged while being fuzzed (its last lines, as kept).
        if any(t in server.log_tail() for t in (pat["token"], operator)):
            print("a token appeared in the server's log", file=sys.stderr)
            status = 1
    except Exception as e:  # noqa: BLE001 - reported with the server's log
        print(f"e2e/openapi: {e}\nserver log:\n{server.log_tail()}", file=sys.stderr)
        status = 1
    finally:
        server.stop()
        llm.stop()
        work.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
