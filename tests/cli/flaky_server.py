#!/usr/bin/env python3
"""A webhook receiver for the delivery tests: answers POSTs on 127.0.0.1, failing a share of them.

    flaky_server.py --port-file F --log L [--port P] [--seed S] [--fail 0.3] [--status 503]

Each request is appended to L as one JSON line {"key", "status", "body"} (flushed before the
answer is sent, so a kill never loses a request that was answered). A request fails with
--status when the seeded random draw is below --fail; otherwise it gets 200. --port 0 picks a free
port; the port is written to F once listening. Standard library only.
"""
import argparse
import http.server
import json
import os
import random
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fail", type=float, default=0.3)
    ap.add_argument("--status", type=int, default=503)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    log = open(args.log, "a", encoding="utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n).decode("utf-8")
            status = args.status if rng.random() < args.fail else 200
            log.write(json.dumps({"key": self.headers.get("Idempotency-Key"), "status": status,
                                  "body": body, "type": self.headers.get("Content-Type")}) + "\n")
            log.flush()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", args.port), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
