"""An HTTP proxy in front of moto that can lose answers: it forwards a SubmitJob and then closes
the connection without answering, as a network failure after the request reached AWS would.
Also how a test makes an endpoint appear (the proxy starts) only once moto is set up."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SUBMIT_PATH = "/v1/submitjob"  # AWS Batch's REST path for SubmitJob


class AnswerLosingProxy:
    def __init__(self, target: str, port: int = 0) -> None:
        self.target = urlsplit(target)
        self.lose_answers = 0  # how many of the next SubmitJob answers to lose
        self.submits_seen = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                connection = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=30)
                headers = {name: value for name, value in self.headers.items() if name.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                payload = answer.read()
                connection.close()
                if self.path.startswith(SUBMIT_PATH):
                    proxy.submits_seen += 1
                    if proxy.lose_answers > 0:
                        proxy.lose_answers -= 1
                        self.close_connection = True  # carried out, never answered
                        return
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
