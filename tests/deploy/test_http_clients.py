"""grafana-client's niquests and the requests stack (schemathesis, others) share one environment.

niquests depends on urllib3-future, whose wheel overwrites the real urllib3 on every interpreter
start; scripts/setup.sh installs it from source beside urllib3 instead. This checks the outcome the
workaround must keep: the real urllib3 under its own name, the fork as urllib3_future, and both HTTP
stacks working against a local server."""

from __future__ import annotations

import http.server
import threading

import pytest


@pytest.fixture
def local_server():
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_the_real_urllib3_and_the_fork_live_side_by_side(local_server):
    import niquests
    import requests
    import urllib3
    import urllib3_future

    assert int(urllib3.__version__.split(".")[-1]) < 900  # the real urllib3, not the fork under its name
    assert int(urllib3_future.__version__.split(".")[-1]) >= 900
    assert requests.get(local_server, timeout=5).json() == {"ok": True}
    assert niquests.get(local_server, timeout=5).json() == {"ok": True}
