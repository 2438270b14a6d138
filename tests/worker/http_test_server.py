#!/usr/bin/env python3
"""A loopback HTTP server for ADD-URL tests; stopped by the test.

Usage: http_test_server.py DIR. Serves DIR's files under /files/ (with
Last-Modified), and a few special paths:
  /cd                 a body with Content-Disposition naming ../../evil.txt
  /redirect-to-file   302 to file:///etc/passwd (must not be followed)
  /redirect           302 to /files/hello.txt
Prints the port on stdout, then serves until killed.
"""
import email.utils
import http.server
import os
import sys

ROOT = sys.argv[1]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_body(self, body, headers=()):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/cd":
            self.send_body(b"disposition\n",
                           [("Content-Disposition", 'attachment; filename="../../evil.txt"')])
        elif self.path == "/redirect-to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/files/hello.txt")
            self.end_headers()
        elif self.path.startswith("/files/"):
            path = os.path.join(ROOT, os.path.basename(self.path))
            if not os.path.isfile(path):
                self.send_error(404)
                return
            with open(path, "rb") as f:
                body = f.read()
            modified = email.utils.formatdate(os.path.getmtime(path), usegmt=True)
            self.send_body(body, [("Last-Modified", modified)])
        else:
            self.send_error(404)


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
