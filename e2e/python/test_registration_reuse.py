"""End-to-end (issue 21): clients that register anew on every run keep working.

fastmcp (`Client(url, auth="oauth")`) and an app on the official MCP Python SDK
(`OAuthClientProvider`) each run 20 times within a minute from 127.0.0.1 against
the real binary with its default limits (5 dynamic client registrations per
minute per source address). Every run is a fresh process with nothing stored
(in-memory token storage, a fresh HOME and TMPDIR), so it does discovery,
dynamic client registration (with a callback port of its own), the
authorization (login and consent pages, played over HTTP by browser.py: for
fastmcp through the BROWSER variable and reg_browser.py, which then calls
fastmcp's own loopback callback server), the code exchange, and `tools/call
whoami` over /mcp, which must name the signed-in account.

What must hold:
  - every run succeeds (no 429 from the registration endpoint), and every run
    sees the consent page (dynamically registered clients never get remembered
    consent);
  - all 20 runs of a kind are answered with the same client_id (201), each with
    a fresh registration_access_token and a registration_client_uri (RFC 7592);
  - `bridgekeeper admin client list --dynamic --format json` (run against the
    data directory while the server is up) lists exactly 2 dynamic clients, the
    two kinds' ones, both used;
  - a 21st SDK-style run whose redirect URI has another path gets a new client
    (3 in the list).

The first run of a kind goes alone, so that the kind's client exists before its
other runs register (identical first registrations racing each other are not
what the issue is about); the rest run a few at a time. By default one kind's
20 runs, then the other's: each kind's 20 must finish within 60 s, which a busy
2-core machine manages with a margin, and on a quiet one all 40 registrations
fall in one minute as well (the test prints how many did). Environment:
  BK_BIN                  the server binary (see bkserver.py)
  BK_E2E_FASTMCP_PYTHON   the fastmcp venv's python (run.sh sets it; default
                          e2e/python/.venv-fastmcp/bin/python)
  BK_E2E_REG_PARALLEL     runs at a time after the first ones (default 4)
  BK_E2E_REG_SCHEDULE     "sequential" (default) or "mixed": the first run of
                          each kind side by side, then both kinds' other runs
                          interleaved, all 40 within one minute (needs a machine
                          fast enough for that)

Run with e2e/python/run.sh. Prints progress; exit status 1 with the reason on
any failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bkserver import Server, server_binary, start_server
from browser import sign_up
from reg_common import RESULT_PREFIX

HERE = Path(__file__).resolve().parent
RUNS_PER_KIND = 20
WINDOW_S = 60.0  # "20 times in a minute"
REGISTRATION_LIMIT = 5  # limits.registrations_per_minute, the default
RUN_TIMEOUT_S = 150.0
FAILED_OUTPUT_LINES = 40
SDK_CLIENT_NAME = "Bridgekeeper e2e registration reuse (MCP Python SDK)"
FASTMCP_CLIENT_NAME = "FastMCP Client"


class TestFailed(Exception):
    pass


def require(condition: object, message: str) -> None:
    if not condition:
        raise TestFailed(message)


@dataclass
class Kind:
    name: str
    python: str
    script: str


@dataclass
class Run:
    kind: str
    n: int
    extra_args: tuple[str, ...] = ()
    result: dict[str, Any] | None = None
    output: str = ""
    exit_code: int | None = None
    started: float = 0.0  # monotonic
    finished: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.kind} #{self.n}"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and bool(self.result and self.result.get("ok"))

    @property
    def error(self) -> str:
        if self.result and self.result.get("error"):
            return self.result["error"]
        if self.result is None:
            return f"the run printed no result line (exit code {self.exit_code})"
        return f"exit code {self.exit_code}"


class Runner:
    def __init__(self, server: Server, email: str, password: str, kinds: dict[str, Kind]) -> None:
        self.server = server
        self.email = email
        self.password = password
        self.kinds = kinds
        self.done: list[Run] = []
        self.failed: list[Run] = []
        self.t0 = time.monotonic()
        self.total = 0

    async def execute(self, run: Run) -> Run:
        kind = self.kinds[run.kind]
        scratch = tempfile.mkdtemp(prefix=f"bk-e2e-reg-{run.kind}-{run.n}-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "BROWSER"}
        env.update(HOME=scratch, TMPDIR=scratch, PYTHONUNBUFFERED="1")
        cmd = [
            kind.python,
            str(HERE / kind.script),
            "--issuer", self.server.issuer,
            "--email", self.email,
            "--password", self.password,
            "--run", str(run.n),
            *run.extra_args,
        ]  # fmt: skip
        run.started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
            run.exit_code = proc.returncode
        except asyncio.TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = await proc.communicate()
            run.exit_code = proc.returncode
            run.result = {"ok": False, "error": f"the run did not finish within {RUN_TIMEOUT_S:.0f} s and was killed"}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        run.finished = time.monotonic()
        run.output = out.decode("utf-8", "replace")
        for line in run.output.splitlines():
            if line.startswith(RESULT_PREFIX) and run.result is None:
                run.result = json.loads(line[len(RESULT_PREFIX):])
        self.report(run)
        return run

    def report(self, run: Run) -> None:
        (self.done if run.ok else self.failed).append(run)
        count = len(self.done) + len(self.failed)
        took = run.finished - run.started
        at = run.finished - self.t0
        r = run.result or {}
        regs = r.get("registrations") or []
        dcr = ",".join(str(x.get("status")) for x in regs) or "-"
        head = f"  [{count:>2}/{self.total}] +{at:5.1f} s  {run.label:<12} {'ok  ' if run.ok else 'FAIL'} {took:4.1f} s"
        if run.ok:
            print(f"{head}  DCR {dcr}  client {r.get('client_id')}  redirect {r.get('redirect_uri')}", flush=True)
        else:
            print(f"{head}  DCR {dcr}  {run.error}", flush=True)

    async def run_all(self, batches: list[list[Run]], parallel: int) -> None:
        """Each batch after the previous one; within a batch, `parallel` at a time.
        After the first failure nothing new starts (the runs under way finish)."""
        for batch in batches:
            queue = list(batch)

            async def worker() -> None:
                while queue and not self.failed:
                    await self.execute(queue.pop(0))

            await asyncio.gather(*(worker() for _ in range(min(parallel, len(batch)))))
            if self.failed:
                return


def registration_order(runs: list[Run]) -> list[tuple[float, Run, dict[str, Any]]]:
    regs = [(reg["t"], run, reg) for run in runs for reg in ((run.result or {}).get("registrations") or [])]
    return sorted(regs, key=lambda x: x[0])


def explain_failure(runner: Runner) -> str:
    lines = [f"{len(runner.done)} runs succeeded, then"]
    order = registration_order(runner.done + runner.failed)
    first_t = order[0][0] if order else 0.0
    for run in runner.failed:
        where = ""
        for i, (t, r, reg) in enumerate(order, 1):
            if r is run and reg.get("status") not in (200, 201):
                where = f" (registration request {i} from 127.0.0.1 in this test, {t - first_t:.1f} s after the first)"
        lines.append(f"{run.label}: {run.error}{where}")
    return lines[0] + " " + "; ".join(lines[1:])


def admin_client_list(server: Server) -> list[dict[str, Any]]:
    cmd = [str(server_binary()), "admin", "client", "list", "--dynamic", "--format", "json", "--data-dir", server.data_dir]
    env = {**os.environ, "BRIDGEKEEPER_LOG_FORMAT": "json"}
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    require(p.returncode == 0, f"`{' '.join(cmd)}` exited {p.returncode}:\nstdout: {p.stdout}\nstderr: {p.stderr}")
    try:
        listed = json.loads(p.stdout)
    except ValueError as err:
        raise TestFailed(f"`admin client list --dynamic --format json` did not print JSON ({err}):\n{p.stdout}\nstderr: {p.stderr}")
    require(isinstance(listed, list), f"`admin client list --format json` prints a JSON array: {p.stdout}")
    for c in listed:
        require(
            isinstance(c, dict) and isinstance(c.get("client_id"), str) and "name" in c and isinstance(c.get("used"), bool),
            f"each listed client has client_id, name and a boolean used: {c!r}",
        )
    return listed


def show_clients(listed: list[dict[str, Any]]) -> str:
    return "\n".join(f"    {c['client_id']}  used={c['used']}  name={c['name']!r}" for c in listed) or "    (none)"


def check_kind(kind: str, runs: list[Run], issuer: str, email: str) -> str:
    """All runs of one kind reused one client; returns its client_id."""
    require(len(runs) == RUNS_PER_KIND, f"{kind}: {len(runs)} runs succeeded, not {RUNS_PER_KIND}")
    ids = {r.result["client_id"] for r in runs}
    require(len(ids) == 1, f"{kind}: the {len(runs)} runs got {len(ids)} different clients, not one: {sorted(ids)}")
    (client_id,) = ids
    redirect_uris = set()
    for r in runs:
        res = r.result
        require(res["whoami"].get("email") == email, f"{r.label}: whoami names {res['whoami'].get('email')}, not {email}")
        regs = res["registrations"]
        require(len(regs) == 1, f"{r.label}: {len(regs)} registration requests, not 1 (a fresh run registers)")
        reg = regs[0]
        require(reg["status"] == 201, f"{r.label}: registration answered {reg['status']}, not 201")
        require(reg["client_id"] == client_id, f"{r.label}: registration answered client_id {reg['client_id']}, not {client_id}")
        require(
            reg["token_endpoint_auth_method"] == "none" and not reg["has_client_secret"],
            f"{r.label}: a public client without a secret: {reg}",
        )
        require(
            reg["registration_access_token_sha256"],
            f"{r.label}: the registration answer carries a registration_access_token (RFC 7592): {reg}",
        )
        uri = reg["registration_client_uri"]
        require(
            isinstance(uri, str) and uri.startswith(issuer + "/"),
            f"{r.label}: the registration answer carries a registration_client_uri on the issuer (RFC 7592): {uri!r}",
        )
        auths = res["authorizations"]
        require(len(auths) == 1, f"{r.label}: {len(auths)} authorizations, not 1")
        require(auths[0]["client_id"] == client_id, f"{r.label}: authorized client {auths[0]['client_id']}, not {client_id}")
        require(auths[0]["logged_in"], f"{r.label}: the fresh browser signed in")
        require(auths[0]["consent_scopes"], f"{r.label}: the consent page was shown (no remembered consent for dynamic clients)")
        redirect_uris.add(reg["request"]["redirect_uris"][0])
    tokens = [r.result["registrations"][0]["registration_access_token_sha256"] for r in runs]
    require(
        len(set(tokens)) == len(tokens),
        f"{kind}: a fresh registration_access_token for each registration, also on reuse "
        f"({len(set(tokens))} distinct among {len(tokens)})",
    )
    uris = {r.result["registrations"][0]["registration_client_uri"] for r in runs}
    require(len(uris) == 1, f"{kind}: one registration_client_uri for the one client: {sorted(uris)}")
    took = [r.finished - r.started for r in runs]
    print(
        f"  {kind}: {len(runs)} runs, each registered (201) with its own callback port "
        f"({len(redirect_uris)} distinct redirect URIs, e.g. {sorted(redirect_uris)[0]}), signed in and approved consent; "
        f"one client {client_id}; {len(set(tokens))} distinct registration access tokens; "
        f"run time min/median/max {min(took):.1f}/{statistics.median(took):.1f}/{max(took):.1f} s"
    )
    return client_id


def window(runs: list[Run]) -> float:
    return max(r.finished for r in runs) - min(r.started for r in runs)


def max_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] > width:
            j += 1
        best = max(best, i - j + 1)
    return best


async def scenario(server: Server, kinds: dict[str, Kind], timings: dict[str, float]) -> None:
    issuer = server.issuer
    parallel = int(os.environ.get("BK_E2E_REG_PARALLEL", "4"))
    schedule = os.environ.get("BK_E2E_REG_SCHEDULE", "sequential")
    require(schedule in ("mixed", "sequential"), f"BK_E2E_REG_SCHEDULE is mixed or sequential, not {schedule!r}")

    before: list[dict[str, Any]] | None = None
    try:
        before = admin_client_list(server)
        print(f"dynamic clients before the runs: {len(before)}")
    except TestFailed as err:
        print(f"WARN: could not list the dynamic clients before the runs (checked again after them): {err}")
    if before:
        raise TestFailed(f"a fresh data directory has no dynamic clients; listed:\n{show_clients(before)}")

    email = f"e2e-reg-{secrets.token_hex(6)}@example.com"
    password = f"pw-{secrets.token_hex(6)}-correct horse"
    t = time.monotonic()
    await sign_up(issuer, email, password)
    timings["sign-up"] = time.monotonic() - t
    print(f"account: {email} (signed up in {timings['sign-up']:.1f} s; every run signs in itself)")

    runner = Runner(server, email, password, kinds)
    runner.total = 2 * RUNS_PER_KIND
    sdk = [Run("sdk", n) for n in range(1, RUNS_PER_KIND + 1)]
    fm = [Run("fastmcp", n) for n in range(1, RUNS_PER_KIND + 1)]
    if schedule == "mixed":
        rest = [r for pair in zip(sdk[1:], fm[1:]) for r in pair]
        batches = [[sdk[0], fm[0]], rest]
        print(
            f"--- {2 * RUNS_PER_KIND} runs: the first of each kind side by side, then the other "
            f"{len(rest)} interleaved, {parallel} at a time"
        )
        await runner.run_all(batches, parallel=max(parallel, 2))
    else:
        print(f"--- {2 * RUNS_PER_KIND} runs, one kind after the other: the first alone, then {parallel} at a time")
        for runs in (sdk, fm):
            await runner.run_all([[runs[0]], runs[1:]], parallel=parallel)
            if runner.failed:
                break
    timings["runs"] = time.monotonic() - runner.t0
    if runner.failed:
        for run in runner.failed:
            lines = [line for line in run.output.rstrip().splitlines() if not line.startswith(RESULT_PREFIX)]
            cut = f"[... {len(lines) - FAILED_OUTPUT_LINES} lines]\n" if len(lines) > FAILED_OUTPUT_LINES else ""
            print(f"--- output of the failed run {run.label} (tail) ---\n{cut}" + "\n".join(lines[-FAILED_OUTPUT_LINES:]))
        raise TestFailed(explain_failure(runner))

    sdk_ok = [r for r in runner.done if r.kind == "sdk"]
    fm_ok = [r for r in runner.done if r.kind == "fastmcp"]
    for kind, runs in (("sdk", sdk_ok), ("fastmcp", fm_ok)):
        timings[f"{kind} window"] = window(runs)
    timings["40 runs window"] = window(runner.done)
    reg_times = [t for t, _, _ in registration_order(runner.done)]
    in_a_minute = max_in_window(reg_times, WINDOW_S)
    print(
        f"all {len(runner.done)} runs succeeded in {timings['runs']:.1f} s: the sdk runs within {timings['sdk window']:.1f} s, "
        f"the fastmcp runs within {timings['fastmcp window']:.1f} s; {in_a_minute} registration requests from 127.0.0.1 "
        f"within one {WINDOW_S:.0f} s window (limit {REGISTRATION_LIMIT} new clients per minute)"
    )
    for kind in ("sdk", "fastmcp"):
        require(
            timings[f"{kind} window"] <= WINDOW_S,
            f"the {RUNS_PER_KIND} {kind} runs took {timings[f'{kind} window']:.1f} s, more than {WINDOW_S:.0f} s: too slow to "
            f"show {RUNS_PER_KIND} runs in a minute (with BK_E2E_REG_SCHEDULE=mixed, try sequential; or another BK_E2E_REG_PARALLEL)",
        )
    if timings["40 runs window"] > WINDOW_S:
        print(f"NOTE: the {len(runner.done)} runs together took more than {WINDOW_S:.0f} s; each kind's {RUNS_PER_KIND} did not")

    print("--- one client per kind")
    sdk_id = check_kind("sdk", sdk_ok, issuer, email)
    fm_id = check_kind("fastmcp", fm_ok, issuer, email)
    require(sdk_id != fm_id, f"the two kinds register different metadata, so different clients; both got {sdk_id}")
    all_tokens = [r.result["registrations"][0]["registration_access_token_sha256"] for r in runner.done]
    require(len(set(all_tokens)) == len(all_tokens), "every registration answer carries its own registration_access_token")

    listed = admin_client_list(server)
    print(f"admin client list --dynamic --format json ({len(listed)}):\n{show_clients(listed)}")
    require(
        len(listed) == 2,
        f"after {2 * RUNS_PER_KIND} runs the clients table grew by one per kind: 2 dynamic clients expected, "
        f"{len(listed)} listed:\n{show_clients(listed)}",
    )
    by_id = {c["client_id"]: c for c in listed}
    require(set(by_id) == {sdk_id, fm_id}, f"the listed clients are the two kinds' ({sdk_id}, {fm_id}):\n{show_clients(listed)}")
    require(by_id[sdk_id]["name"] == SDK_CLIENT_NAME, f"the SDK client's name: {by_id[sdk_id]['name']!r}")
    require(by_id[fm_id]["name"] == FASTMCP_CLIENT_NAME, f"the fastmcp client's name: {by_id[fm_id]['name']!r}")
    require(all(c["used"] for c in listed), f"both clients were used (they got tokens):\n{show_clients(listed)}")

    print("--- a 21st SDK-style run whose redirect URI has another path registers a new client")
    other = Run("sdk", RUNS_PER_KIND + 1, ("--callback-path", "/other-callback"))
    runner.total += 1
    t = time.monotonic()
    await runner.execute(other)
    timings["21st run"] = time.monotonic() - t
    require(other.ok, f"{other.label} (other redirect path): {other.error}\n{other.output}")
    reg = other.result["registrations"][0]
    require(reg["status"] == 201, f"{other.label}: registration answered {reg['status']}")
    new_id = other.result["client_id"]
    require(
        new_id not in (sdk_id, fm_id),
        f"a registration with a different redirect URI path ({other.result['redirect_uri']}) is a new client, "
        f"but it was answered with {new_id}",
    )
    listed = admin_client_list(server)
    print(f"admin client list --dynamic --format json ({len(listed)}):\n{show_clients(listed)}")
    require(
        len(listed) == 3 and {c["client_id"] for c in listed} == {sdk_id, fm_id, new_id},
        f"3 dynamic clients expected ({sdk_id}, {fm_id}, {new_id}):\n{show_clients(listed)}",
    )
    require(all(c["used"] for c in listed), f"all three were used:\n{show_clients(listed)}")


def versions(kinds: dict[str, Kind]) -> str:
    from importlib.metadata import version

    probe = "import importlib.metadata as m; print(m.version('fastmcp'), m.version('mcp'))"
    p = subprocess.run([kinds["fastmcp"].python, "-c", probe], capture_output=True, text=True, timeout=60)
    require(p.returncode == 0, f"fastmcp is not installed for {kinds['fastmcp'].python}: {p.stderr.strip()}")
    fastmcp_version, fastmcp_mcp = p.stdout.split()
    return (
        f"mcp {version('mcp')} (SDK runs), fastmcp {fastmcp_version} with mcp {fastmcp_mcp} (fastmcp runs), "
        f"Python {sys.version.split()[0]}"
    )


async def main() -> int:
    started = time.monotonic()
    fastmcp_python = os.environ.get("BK_E2E_FASTMCP_PYTHON") or str(HERE / ".venv-fastmcp" / "bin" / "python")
    kinds = {
        "sdk": Kind("sdk", sys.executable, "reg_sdk_client.py"),
        "fastmcp": Kind("fastmcp", fastmcp_python, "reg_fastmcp_client.py"),
    }
    timings: dict[str, float] = {}
    server: Server | None = None
    try:
        if not Path(fastmcp_python).is_file():
            raise TestFailed(f"no fastmcp venv at {fastmcp_python}: run e2e/python/run.sh (or set BK_E2E_FASTMCP_PYTHON)")
        print(versions(kinds))
        t = time.monotonic()
        server = start_server()
        timings["server start"] = time.monotonic() - t
        print(f"server: {server.issuer} ({server_binary()}), data dir {server.data_dir}")
        await scenario(server, kinds, timings)
    except Exception as err:  # noqa: BLE001 - reported
        if not isinstance(err, TestFailed):
            traceback.print_exception(err)
        if server is not None:
            print(f"--- server log (tail) ---\n{server.log_tail()}")
        print(f"FAIL test_registration_reuse ({time.monotonic() - started:.1f} s): {err}")
        return 1
    finally:
        if server is not None:
            server.stop()
    timings["total"] = time.monotonic() - started
    print("durations: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"PASS test_registration_reuse ({timings['total']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
