"""HTTP plumbing shared by the test servers in t/bin (receiver.py,
tls_receiver.py, console.py, raw_console.py): Python's http.server parses
requests but leaves a chunked body to the handler."""


def read_body(handler):
    """The request body of a BaseHTTPRequestHandler: chunked (trailers
    skipped up to the empty line) or Content-Length, b"" without either."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while True:
            line = handler.rfile.readline()
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""


def serve(server):
    """Serve until interrupted, then close the listening socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
