#!/usr/bin/env python3
"""Refresh-token grants for the soak run, for as long as it lasts (stdlib only).

One thread per seed line ("client_id refresh_token", as setup_tokens.py writes them), each on its own
keep-alive connection, exchanging its refresh token again and again and keeping the rotated one (a
token is never used twice, so no session is revoked as a replay). Every second it appends a line
"unix_time ok failed" to OUT_FILE; the first failure's status and body go to OUT_FILE.err.

Usage: soak_refresh.py BASE_URL SEEDS_FILE SECONDS OUT_FILE
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse


def main() -> None:
    base, seeds_file, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    u = urllib.parse.urlparse(base)
    seeds = [line.split() for line in open(seeds_file) if line.strip()]
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    stop_at = time.time() + seconds
    first_error: list[str] = []

    def run(client_id: str, token: str) -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        while time.time() < stop_at:
            body = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id})
            try:
                conn.request("POST", "/api/v1/auth/token", body, {"Content-Type": "application/x-www-form-urlencoded"})
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException) as e:
                # The server was killed (the soak ends that way) or the connection broke: reconnect.
                with lock:
                    counts["failed"] += 1
                    if not first_error:
                        first_error.append(f"connection error: {e!r}")
                conn.close()
                time.sleep(0.2)
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                continue
            with lock:
                if r.status == 200:
                    counts["ok"] += 1
                else:
                    counts["failed"] += 1
                    if not first_error:
                        first_error.append(f"{r.status} {data[:300]!r}")
            if r.status == 200:
                token = json.loads(data)["refresh_token"]
            else:
                time.sleep(0.2)

    threads = [threading.Thread(target=run, args=(c, t), daemon=True) for c, t in seeds]
    for t in threads:
        t.start()
    with open(out, "a") as f:
        while time.time() < stop_at:
            time.sleep(1)
            with lock:
                f.write(f"{time.time():.0f} {counts['ok']} {counts['failed']}\n")
            f.flush()
    for t in threads:
        t.join(timeout=5)
    if first_error:
        with open(out + ".err", "w") as f:
            f.write(first_error[0] + "\n")


if __name__ == "__main__":
    main()
