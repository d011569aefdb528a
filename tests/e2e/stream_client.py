#!/usr/bin/env python3
"""stream_client.py — a client of GET /api/v1/events/stream for the end-to-end tests.

Speaks HTTP/1.1 over a raw socket (the body ends when the server closes), so a
test controls exactly when it reads and when it hangs up.

  collect BASE KEY N [--query Q] [--last-event-id ID] [--ndjson] [--timeout S]
          [--ready-file F]
      read until N events arrived (exit 1 on timeout or on an error message);
      print one JSON line per event: {"id": <position>, "event": {...}};
      F is created when the first heartbeat or event arrived (the start is fixed)
  concurrent BASE KEY STREAMS N [--query Q]
      STREAMS streams at once, each until N events; exit 0 when all got the
      same events in the same per-partition order; print a summary line
  slow BASE KEY [--query Q] [--rcvbuf B] [--wait S] [--read-after S]
      a client that does not read: tiny receive buffer, reads nothing until
      /metrics counts one more cut consumer (at most S seconds), then reads
      all; print the last message (must be the error)
  raw BASE KEY [--query Q] [--header H] ... [--timeout S]
      print the status line, the headers and the first 2 KB of the body read
      within S seconds
  audit BASE KEY --out FILE
      every event of the audit API into FILE (a JSON array); print the count
"""
import argparse
import json
import socket
import sys
import threading
import time
import urllib.parse


def connect(base, key, query, headers=(), rcvbuf=None, timeout=30):
    u = urllib.parse.urlsplit(base)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((u.hostname, u.port))
    path = "/api/v1/events/stream" + ("?" + query if query else "")
    lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (u.hostname, u.port),
             "Authorization: Bearer " + key] + list(headers)
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return s


class Reader:
    """Reads the answer head, then the body line by line."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""
        self.eof = False

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            self.eof = True
        self.buf += d

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
            if self.eof:
                raise SystemExit("connection closed before the answer head: %r" % self.buf)
        h, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = h.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        return status, hdrs

    def line(self):
        while b"\n" not in self.buf:
            if self.eof:
                return None
            self._fill()
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.decode()


def messages(rd, ndjson):
    """Yield ("event", id, obj) / ("error", None, obj) / ("hb", None, None)."""
    if ndjson:
        while True:
            ln = rd.line()
            if ln is None:
                return
            if ln == "":
                yield ("hb", None, None)
                continue
            o = json.loads(ln)
            if "error" in o:
                yield ("error", None, o["error"])
            else:
                yield ("event", o.pop("stream_position"), o)
    else:
        ev = {}
        while True:
            ln = rd.line()
            if ln is None:
                return
            if ln == "":
                if "data" in ev:
                    kind = "error" if ev.get("event") == "error" else "event"
                    yield (kind, ev.get("id"), json.loads(ev["data"]))
                elif ev.get("comment") == " hb":
                    yield ("hb", None, None)
                ev = {}
                continue
            if ln.startswith(":"):
                ev["comment"] = ln[1:]
                continue
            k, _, v = ln.partition(":")
            ev[k] = v[1:] if v.startswith(" ") else v


def open_stream(a, headers=(), rcvbuf=None, timeout=30):
    hs = list(headers)
    if getattr(a, "ndjson", False):
        hs.append("Accept: application/x-ndjson")
    if getattr(a, "last_event_id", None):
        hs.append("Last-Event-ID: " + a.last_event_id)
    s = connect(a.base, a.key, a.query, hs, rcvbuf, timeout)
    rd = Reader(s)
    status, hdrs = rd.head()
    return s, rd, status, hdrs


def cmd_collect(a):
    s, rd, status, hdrs = open_stream(a, timeout=a.timeout)
    if status != 200:
        sys.exit("status %d: %s" % (status, rd.buf[:500]))
    want = "application/x-ndjson" if a.ndjson else "text/event-stream"
    if hdrs.get("content-type") != want:
        sys.exit("content type %r, expected %s" % (hdrs.get("content-type"), want))
    n = 0
    deadline = time.time() + a.timeout
    out = []
    try:
        for kind, pos, obj in messages(rd, a.ndjson):
            if a.ready_file:
                open(a.ready_file, "w").close()
                a.ready_file = None
            if kind == "error":
                sys.exit("error message after %d events: %s" % (n, obj))
            if kind == "event":
                out.append(json.dumps({"id": pos, "event": obj}))
                n += 1
                if n >= a.n:
                    break
            if time.time() > deadline:
                break
    except socket.timeout:
        pass
    s.close()
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))
    if n < a.n:
        sys.exit("only %d of %d events within %s s" % (n, a.n, a.timeout))


def cmd_concurrent(a):
    results = [None] * a.streams
    errors = []

    def one(i):
        try:
            s, rd, status, _ = open_stream(a, timeout=120)
            if status != 200:
                errors.append("stream %d: status %d" % (i, status))
                return
            # read raw bytes first (cheap, so 50 threads keep up), parse afterwards
            # until the n-th message is complete (its data line and the blank
            # line after it): a read can end in the middle of a message
            while b"event: error" not in rd.buf:
                if rd.buf.count(b"\ndata: ") >= a.n and \
                        b"\n\n" in rd.buf[rd.buf.rfind(b"\ndata: "):]:
                    break
                rd._fill()
                if rd.eof:
                    break
            s.close()
            rd.eof = True
            got = []
            for kind, pos, obj in messages(rd, False):
                if kind == "error":
                    errors.append("stream %d: %s" % (i, obj))
                    break
                if kind == "event":
                    got.append((obj["topic"], obj["partition"], obj["offset"], obj["event_id"]))
                    if len(got) >= a.n:
                        break
            results[i] = got
        except Exception as e:  # noqa: BLE001 (report any failure of a stream)
            errors.append("stream %d: %r" % (i, e))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(a.streams)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        sys.exit("; ".join(errors[:5]))
    ref = None
    for i, r in enumerate(results):
        if r is None or len(r) != a.n:
            sys.exit("stream %d got %s events" % (i, None if r is None else len(r)))
        per = {}
        for t, p, o, e in r:
            per.setdefault((t, p), []).append((o, e))
        for k, v in per.items():
            if [x[0] for x in v] != sorted(x[0] for x in v):
                sys.exit("stream %d: partition %s out of order" % (i, k))
        if ref is None:
            ref = per
        elif per != ref:
            sys.exit("stream %d differs from stream 0" % i)
    print("streams=%d events=%d seconds=%.1f" % (a.streams, a.n, time.time() - t0))


def slow_count(base):
    import urllib.request
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    for ln in text.splitlines():
        if ln.startswith("kcqrs_query_stream_slow_consumers_total "):
            return int(ln.split()[1])
    return 0


def cmd_slow(a):
    s, rd, status, _ = open_stream(a, rcvbuf=a.rcvbuf, timeout=60)
    if status != 200:
        sys.exit("status %d" % status)
    # read nothing until the server counted a cut consumer (at most --wait seconds)
    before = slow_count(a.base)
    deadline = time.time() + a.wait
    while time.time() < deadline and slow_count(a.base) <= before:
        time.sleep(0.2)
    time.sleep(a.read_after)  # a client that comes back late still gets the last message
    last = None
    n = 0
    for kind, pos, obj in messages(rd, a.ndjson):
        if kind == "event":
            n += 1
        last = (kind, obj)
    s.close()
    print(json.dumps({"events": n, "last_kind": last and last[0], "last": last and last[1]}))


def cmd_raw(a):
    s = connect(a.base, a.key, a.query, a.header or [], timeout=a.timeout)
    data = b""
    deadline = time.time() + a.timeout
    try:
        while len(data) < 2048 and time.time() < deadline:
            s.settimeout(max(0.01, deadline - time.time()))
            d = s.recv(4096)
            if not d:
                break
            data += d
    except socket.timeout:
        pass
    s.close()
    sys.stdout.write(data[:2048].decode(errors="replace"))


def cmd_audit(a):
    import urllib.request
    items, cursor = [], None
    while True:
        url = a.base + "/api/v1/audit?limit=1000" + ("&cursor=" + cursor if cursor else "")
        r = urllib.request.urlopen(urllib.request.Request(
            url, headers={"Authorization": "Bearer " + a.key}), timeout=30)
        d = json.load(r)
        items += d["items"]
        cursor = d["next_cursor"]
        if not cursor:
            break
    with open(a.out, "w") as f:
        json.dump(items, f)
    print(len(items))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("collect", "concurrent", "slow", "raw", "audit"):
        q = sub.add_parser(name)
        q.add_argument("base")
        q.add_argument("key")
        if name == "concurrent":
            q.add_argument("streams", type=int)
        if name in ("collect", "concurrent"):
            q.add_argument("n", type=int)
        q.add_argument("--query", default="")
        q.add_argument("--ndjson", action="store_true")
        q.add_argument("--last-event-id")
        q.add_argument("--timeout", type=float, default=60)
        q.add_argument("--rcvbuf", type=int, default=4096)
        q.add_argument("--wait", type=float, default=3)
        q.add_argument("--read-after", type=float, default=0)
        q.add_argument("--header", action="append")
        q.add_argument("--out")
        q.add_argument("--ready-file")
    a = p.parse_args()
    {"collect": cmd_collect, "concurrent": cmd_concurrent, "slow": cmd_slow,
     "raw": cmd_raw, "audit": cmd_audit}[a.cmd](a)


if __name__ == "__main__":
    main()
