#!/usr/bin/env python3
"""Creates the token material for the benchmark against a running Bridgekeeper (stdlib only).

Signs up one account through the HTML form, registers one public client by dynamic client
registration, runs the authorization-code flow (PKCE S256) N times and exchanges each code.

Writes to OUT_DIR:
  seeds.txt         one "client_id refresh_token" line per session (wrk refresh seeds)
  access_token.txt  one access token (for the MCP tools/list run)

Usage: setup_tokens.py BASE_URL OUT_DIR [SESSIONS]
Any unexpected response aborts with the exact request and response on stderr.
"""

import base64
import hashlib
import html.parser
import http.client
import json
import os
import secrets
import sys
import urllib.parse

REDIRECT_URI = "http://127.0.0.1:9/cb"
SCOPE = "universal-mcp-read-write"


class Fail(Exception):
    pass


class Client:
    """Minimal HTTP client: one keep-alive connection, no redirect following, one cookie."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.cookie = None  # value of bk_session

    def request(self, method, path, body=None, headers=None):
        hdrs = dict(headers or {})
        if self.cookie:
            hdrs["Cookie"] = "bk_session=" + self.cookie
        if isinstance(body, dict):
            body = urllib.parse.urlencode(body)
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        for k, v in resp.getheaders():
            if k.lower() == "set-cookie" and v.startswith("bk_session="):
                val = v.split(";", 1)[0].split("=", 1)[1]
                self.cookie = val or None
        return resp.status, resp.getheader("Location"), data, (method, path, body, hdrs, resp)


def describe(ctx, status, data):
    method, path, body, hdrs, resp = ctx
    return (
        f"request: {method} {path}\n  headers: {hdrs}\n  body: {body!r}\n"
        f"response: {status}\n  headers: {resp.getheaders()}\n  body: {data[:2000]!r}"
    )


def expect(res, statuses, what):
    status, loc, data, ctx = res
    if status not in statuses:
        raise Fail(f"{what}: expected {statuses}, got {status}\n" + describe(ctx, status, data))
    return status, loc, data


class Inputs(html.parser.HTMLParser):
    """Collects <input name=… value=…> of the first POST form."""

    def __init__(self):
        super().__init__()
        self.fields = []

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            a = dict(attrs)
            if "name" in a and a.get("type") == "hidden":
                self.fields.append((a["name"], a.get("value") or ""))


def hidden_inputs(data):
    p = Inputs()
    p.feed(data.decode("utf-8", "replace"))
    return p.fields


def code_from(loc, what, res):
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc or "").query)
    if not (loc or "").startswith(REDIRECT_URI) or "code" not in q:
        raise Fail(f"{what}: expected a redirect to {REDIRECT_URI} with a code\n" + describe(res[3], res[0], res[2]))
    return q["code"][0]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    base, out_dir = sys.argv[1].rstrip("/"), sys.argv[2]
    sessions = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    c = Client(base)

    # 1. Sign up through the HTML form.
    _, _, page = expect(c.request("GET", "/signup"), {200}, "GET /signup")
    fields = dict(hidden_inputs(page))
    if "csrf_token" not in fields or not c.cookie:
        raise Fail(f"GET /signup: no csrf_token input or no bk_session cookie (cookie={c.cookie!r})")
    email = f"bench-{secrets.token_hex(4)}@example.com"
    expect(
        c.request("POST", "/signup", {
            "email": email, "password": "bench-password-" + secrets.token_hex(8),
            "csrf_token": fields["csrf_token"], "next": "/",
        }),
        {303}, "POST /signup",
    )

    # 2. Register one public client.
    reg = {
        "client_name": "bench",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": SCOPE,
    }
    _, _, data = expect(
        c.request("POST", "/api/v1/auth/register", json.dumps(reg), {"Content-Type": "application/json"}),
        {200, 201}, "POST /api/v1/auth/register",
    )
    client_id = json.loads(data)["client_id"]

    # 3. N authorization-code flows, each exchanged for a token pair.
    seeds, access = [], None
    for i in range(sessions):
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        qs = urllib.parse.urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
            "scope": SCOPE, "state": "x", "code_challenge": challenge, "code_challenge_method": "S256",
        })
        res = c.request("GET", "/api/v1/auth/authorize?" + qs)
        _, loc, _ = expect(res, {302, 303}, "GET /api/v1/auth/authorize")
        if loc and loc.startswith("/consent"):
            if i > 0:
                print(f"note: authorize #{i} asked for consent again (consent not remembered)", file=sys.stderr)
            _, _, page = expect(c.request("GET", loc), {200}, "GET " + loc)
            form = hidden_inputs(page) + [("decision", "approve")]
            res = c.request("POST", "/consent", urllib.parse.urlencode(form),
                            {"Content-Type": "application/x-www-form-urlencoded"})
            _, loc, _ = expect(res, {302, 303}, "POST /consent")
        code = code_from(loc, f"authorize #{i}", res)
        _, _, data = expect(
            c.request("POST", "/api/v1/auth/token", {
                "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "client_id": client_id, "code_verifier": verifier,
            }),
            {200}, "POST /api/v1/auth/token (authorization_code)",
        )
        tok = json.loads(data)
        if "refresh_token" not in tok or "access_token" not in tok:
            raise Fail(f"token response lacks access_token/refresh_token: {data[:500]!r}")
        seeds.append((client_id, tok["refresh_token"]))
        access = access or tok["access_token"]

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "seeds.txt"), "w") as f:
        for cid, rt in seeds:
            f.write(f"{cid} {rt}\n")
    with open(os.path.join(out_dir, "access_token.txt"), "w") as f:
        f.write(access + "\n")
    print(f"setup: account {email}, client {client_id}, {len(seeds)} sessions")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("setup_tokens.py: " + str(e), file=sys.stderr)
        sys.exit(1)
