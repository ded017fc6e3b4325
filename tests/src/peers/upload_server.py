"""The fleet service's upload endpoint as a room meets it, for the tests: HTTPS that requires a
client certificate of the fleet's CA and keeps each PUT body as `<certificate name>__<path>`.

Usage: upload_server.py PORT CA CERT KEY OUTDIR
"""
import http.server
import os
import ssl
import sys

port, ca, cert, key, outdir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        length = int(self.headers.get("Content-Length", "0"))
        if length > 32 * 1024 * 1024:
            self.send_error(413)
            return
        body = self.rfile.read(length)
        subject = dict(x[0] for x in self.connection.getpeercert()["subject"])
        name = self.path.strip("/").replace("/", "_")
        with open(os.path.join(outdir, f"{subject.get('commonName', '')}__{name}"), "wb") as f:
            f.write(body)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        sys.stderr.write("upload: " + (fmt % args) + "\n")


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
