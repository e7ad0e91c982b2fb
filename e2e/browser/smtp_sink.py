"""A local SMTP sink for the browser tests: aiosmtpd on 127.0.0.1, each message received is
written to the directory given as the first argument (one .eml file per message) and announced on
stdout as a JSON line {"to": [...], "file": "..."}. The first line is {"port": N} once it listens."""

import json
import os
import signal
import socket
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        path = os.path.join(self.out, f"{time.time_ns()}-{self.n}.eml")
        with open(path, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        print(json.dumps({"to": envelope.rcpt_tos, "file": path}), flush=True)
        return "250 Message accepted"


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    controller = Controller(Handler(out), hostname="127.0.0.1", port=port)
    controller.start()
    print(json.dumps({"port": port}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
