#!/usr/bin/env python3
"""Creates the token material for the benchmark against a running Bridgekeeper (stdlib only).

Signs up one account through the HTML form, registers one public client by dynamic client
registration, runs the authorization-code flow (PKCE S256) N times and exchanges each code.

With --codes-only it stops before the exchanges: it writes the N codes (valid for 60 s) for a client
that redeems them itself (bench/dpop_refresh.mjs, which redeems some with a DPoP proof).

With --confidential M --operator-token-file FILE it also creates one confidential client through
the operator API (POST /api/v1/auth-clients, Bearer operator token), runs the same flow M times
for it as the same signed-in user and exchanges each code with client_secret_basic
(Authorization: Basic base64(urlencode(id):urlencode(secret)), no client_id in the form).

Writes to OUT_DIR:
  seeds.txt                 one "client_id refresh_token" line per session (wrk refresh seeds)
  access_token.txt          one access token (for the MCP tools/list run)
  seeds_confidential.txt    (--confidential) the same for the confidential client
  basic_auth.txt            (--confidential) the Authorization header value "Basic …"
  codes.txt                 (--codes-only, instead of seeds.txt and access_token.txt) one
                            "client_id code code_verifier redirect_uri" line per session

Usage: setup_tokens.py BASE_URL OUT_DIR [SESSIONS] [--codes-only]
                       [--confidential M --operator-token-file FILE]
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
SCOPE = os.environ.get("BENCH_SCOPE", "universal-mcp-read-write")


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


def code_flows(c, client_id, sessions, auth_headers, form_client_id, codes=None):
    """Runs `sessions` authorization-code flows (PKCE S256) for client_id as the signed-in user of
    `c`; exchanges each code with the given extra headers (client authentication) and, when
    form_client_id is set, client_id in the form. Returns ([(client_id, refresh_token)], access).
    With a list `codes`, appends (client_id, code, verifier) to it instead of exchanging."""
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
        if codes is not None:
            codes.append((client_id, code, verifier))
            continue
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier}
        if form_client_id:
            form["client_id"] = form_client_id
        _, _, data = expect(
            c.request("POST", "/api/v1/auth/token", form, dict(auth_headers)),
            {200}, "POST /api/v1/auth/token (authorization_code)",
        )
        tok = json.loads(data)
        if "refresh_token" not in tok or "access_token" not in tok:
            raise Fail(f"token response lacks access_token/refresh_token: {data[:500]!r}")
        seeds.append((client_id, tok["refresh_token"]))
        access = access or tok["access_token"]
    return seeds, access


def main():
    args, conf_sessions, operator_token, codes_only = [], 0, None, False
    argv = sys.argv[1:]
    while argv:
        a = argv.pop(0)
        if a == "--confidential" and argv:
            conf_sessions = int(argv.pop(0))
        elif a == "--codes-only":
            codes_only = True
        elif a == "--operator-token-file" and argv:
            operator_token = open(argv.pop(0)).read().strip().splitlines()[-1].strip()
        elif a.startswith("--"):
            sys.exit(__doc__)
        else:
            args.append(a)
    if len(args) < 2 or (conf_sessions and not operator_token):
        sys.exit(__doc__)
    base, out_dir = args[0].rstrip("/"), args[1]
    sessions = int(args[2]) if len(args) > 2 else 128
    c = Client(base)

    # 1. Sign up through the HTML form.
    _, _, page = expect(c.request("GET", "/signup"), {200}, "GET /signup")
    fields = dict(hidden_inputs(page))
    if "csrf_token" not in fields or not c.cookie:
        raise Fail(f"GET /signup: no csrf_token input or no bk_session cookie (cookie={c.cookie!r})")
    email = f"bench-{secrets.token_hex(4)}@example.com"
    password = "bench-password-" + secrets.token_hex(8)
    expect(
        c.request("POST", "/signup", {
            "email": email, "password": password, "csrf_token": fields["csrf_token"], "next": "/",
        }),
        {303}, "POST /signup",
    )
    # Sign-up does not sign in (its answer must not tell whether the email was taken): sign in.
    _, _, page = expect(c.request("GET", "/login"), {200}, "GET /login")
    fields = dict(hidden_inputs(page))
    expect(
        c.request("POST", "/login", {"email": email, "password": password, "csrf_token": fields["csrf_token"], "next": "/"}),
        {303}, "POST /login",
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

    # 3. N authorization-code flows, each exchanged for a token pair (or, --codes-only, not).
    if codes_only:
        codes = []
        code_flows(c, client_id, sessions, auth_headers={}, form_client_id=client_id, codes=codes)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "codes.txt"), "w") as f:
            for cid, code, verifier in codes:
                f.write(f"{cid} {code} {verifier} {REDIRECT_URI}\n")
        print(f"setup: account {email}, client {client_id}, {len(codes)} codes (not redeemed)")
        return
    seeds, access = code_flows(c, client_id, sessions, auth_headers={}, form_client_id=client_id)

    conf_seeds, conf_id = [], None
    if conf_sessions:
        # 4. One confidential client through the operator API, M flows exchanged with Basic auth.
        body = {
            "name": "bench-confidential", "type": "confidential", "roles": ["third-party"],
            "redirectUris": [REDIRECT_URI], "allowedScopes": [SCOPE],
        }
        op = Client(base)  # no session cookie: operator-token authentication only
        _, _, data = expect(
            op.request("POST", "/api/v1/auth-clients", json.dumps(body),
                       {"Content-Type": "application/json", "Authorization": "Bearer " + operator_token}),
            {201}, "POST /api/v1/auth-clients",
        )
        created = json.loads(data)
        conf_id, conf_secret = created["clientId"], created["clientSecret"]
        q = urllib.parse.quote
        basic = "Basic " + base64.b64encode(f"{q(conf_id, safe='')}:{q(conf_secret, safe='')}".encode()).decode()
        conf_seeds, _ = code_flows(c, conf_id, conf_sessions, auth_headers={"Authorization": basic},
                                   form_client_id=None)

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "seeds.txt"), "w") as f:
        for cid, rt in seeds:
            f.write(f"{cid} {rt}\n")
    with open(os.path.join(out_dir, "access_token.txt"), "w") as f:
        f.write(access + "\n")
    print(f"setup: account {email}, client {client_id}, {len(seeds)} sessions")
    if conf_sessions:
        with open(os.path.join(out_dir, "seeds_confidential.txt"), "w") as f:
            for cid, rt in conf_seeds:
                f.write(f"{cid} {rt}\n")
        with open(os.path.join(out_dir, "basic_auth.txt"), "w") as f:
            f.write(basic + "\n")
        print(f"setup: confidential client {conf_id}, {len(conf_seeds)} sessions (client_secret_basic)")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print("setup_tokens.py: " + str(e), file=sys.stderr)
        sys.exit(1)
