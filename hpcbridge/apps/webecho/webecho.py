"""A tiny hpcbridge session service (stdlib only): answers HTTP under its base URL and
echoes WebSocket messages at <base>ws. Only requests with the session's token get in.

  GET  <base>          JSON: who it is, the path and query it got, its node
  POST <base>echo      the body back
  GET  <base>ws        WebSocket (RFC 6455): every text/binary message echoed back
"""
import base64
import hashlib
import json
import os
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ["HPCBRIDGE_SESSION_PORT"])
BASE = os.environ.get("HPCBRIDGE_BASE_URL", "/")
TOKEN = os.environ.get("HPCBRIDGE_SESSION_TOKEN", "")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(rfile, n):
    data = rfile.read(n)
    if len(data) < n:
        raise EOFError
    return data


def read_frame(rfile):
    """(opcode, payload) of one client frame (clients always mask)."""
    b1, b2 = read_exact(rfile, 2)
    length = b2 & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exact(rfile, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exact(rfile, 8))[0]
    if length > 16 << 20:
        raise EOFError
    mask = read_exact(rfile, 4) if b2 & 0x80 else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(read_exact(rfile, length)))
    return b1 & 0x0F, payload


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # head and body in one write (flushed after each request)
    disable_nagle_algorithm = True

    def allowed(self):
        if self.headers.get("Authorization") != f"token {TOKEN}" or \
                not self.path.startswith(BASE):
            self.reply(403 if self.path.startswith(BASE) else 404, {"error": "no"})
            return False
        return True

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if not self.allowed():
            return
        rest, _, query = self.path[len(BASE):].partition("?")
        if rest == "ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        self.reply(200, {"app": "webecho", "path": rest, "query": query,
                         "node": socket.gethostname(), "time": time.time()})

    def do_POST(self):
        if not self.allowed():
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(200, body, self.headers.get("Content-Type", "application/octet-stream"))

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        try:
            while True:
                opcode, payload = read_frame(self.rfile)
                if opcode == 8:  # close: answer it and end
                    self.wfile.write(frame(8, payload[:2]))
                    self.wfile.flush()
                    break
                if opcode == 9:  # ping
                    self.wfile.write(frame(10, payload))
                elif opcode in (1, 2):
                    self.wfile.write(frame(opcode, payload))
                self.wfile.flush()
        except (EOFError, OSError):
            pass
        self.close_connection = True

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


if __name__ == "__main__":
    if os.environ.get("param_listen", "true") == "false":
        print("told not to listen: sleeping", flush=True)
        time.sleep(10 ** 6)
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"listening on {PORT} under {BASE}", flush=True)
    server.serve_forever()
