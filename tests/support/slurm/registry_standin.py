"""A stand-in of the one Harbor API endpoint aiinfn fl asks: does an artifact exist (no Harbor runs here).

``GET /api/v2.0/projects/<project>/repositories/<repository>/artifacts/<reference>`` answers 200 with a
small JSON body when ``<registry host>/<project>/<repository>:<reference>`` is one of the images given
with ``--image``, 404 otherwise (Harbor's own answers; the repository is URL-encoded twice, as Harbor
wants it, and decoded here the same way). Every request is appended to ``--log`` as one JSON line.
Run as ``python registry_standin.py --port P --host harbor.example --image ... --log FILE``; it prints
``ready`` once it listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

PATH = re.compile(r"^/api/v2\.0/projects/(?P<project>[^/]+)/repositories/(?P<repo>[^/]+)/artifacts/(?P<ref>[^/?]+)$")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", required=True, help="the registry host the images live on")
    parser.add_argument("--image", action="append", default=[])
    parser.add_argument("--log", required=True)
    ns = parser.parse_args()
    images = set(ns.image)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            m = PATH.match(self.path)
            found = False
            if m:
                repo = unquote(unquote(m["repo"]))
                ref = unquote(m["ref"])
                sep = "@" if ref.startswith("sha256:") else ":"
                found = f"{ns.host}/{unquote(m['project'])}/{repo}{sep}{ref}" in images
            with open(ns.log, "a") as fh:
                fh.write(json.dumps({"path": self.path, "found": found}) + "\n")
            body = json.dumps({"digest": "sha256:" + "0" * 64} if found else
                              {"errors": [{"code": "NOT_FOUND", "message": "artifact not found"}]}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", ns.port), Handler)
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
