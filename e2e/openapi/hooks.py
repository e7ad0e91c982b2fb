"""Schemathesis hooks of the e2e/openapi suite (loaded through SCHEMATHESIS_HOOKS by fuzz.py).

Every operation is fuzzed, destructive ones included, except on the few objects that the run's own
credentials stand on: the personal access token (its id and its session's id) and the account
holding it. Revoking that token, or disabling or deleting that account, would turn every later case
of the run into a 401, so nothing after it would test anything. A case aimed at one of those ids is
sent to a look-alike id that does not exist instead (it then tests the 404 path).
"""

from __future__ import annotations

import os

import schemathesis

PROTECTED = {i for i in os.environ.get("BK_E2E_PROTECTED_IDS", "").split(",") if i}
# Sign-In with Ethereum answers only this site's pages (their Origin): without it every case would
# be the same 403, and the message and signature checks behind it would go unfuzzed.
ORIGIN = os.environ.get("BK_E2E_ORIGIN", "")


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters or {}
    for name, value in list(params.items()):
        if isinstance(value, str) and value in PROTECTED:
            params[name] = value + "-not-this-one"
    if ORIGIN and case.method.upper() == "POST" and case.path == "/api/v1/auth/authenticate":
        case.headers = {**(case.headers or {}), "Origin": ORIGIN}
