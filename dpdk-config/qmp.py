#!/usr/bin/env python3
"""A minimal QMP client for the QEMU scripts (standard library only).

    qmp.py [--timeout S] SOCKET STEP...

Connects to QEMU's QMP socket (-qmp unix:SOCKET,server=on,wait=off), negotiates
capabilities, then runs each STEP in order on the same connection:

    '{"execute": "...", "arguments": {...}}'   sends the command and waits for its reply;
                                               an "error" reply fails the run
    event:NAME[:KEY=VALUE...]                  waits for an event NAME whose data has those
                                               KEY=VALUE pairs (events that arrived during
                                               earlier steps count too)

Prints every command sent (`qmp> `), every reply and event received (`qmp< `), one line each.
Exit status: 0 every step succeeded; 1 an error reply, a timeout or a closed connection;
2 bad usage. Each step has S seconds (default 30).

QMP emits events only to connected clients, so a command and the event it causes (device_del
and DEVICE_DELETED) must be steps of the same run.
"""

import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path, timeout):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.next_id = 1

    def _recv(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from QEMU in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:  # not a TimeoutError before Python 3.10
                raise TimeoutError("no message from QEMU in time") from None
            if not chunk:
                raise ConnectionError("QEMU closed the QMP connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._recv(deadline)
        msg = json.loads(line)
        print("qmp< " + json.dumps(msg, separators=(",", ":")), flush=True)
        if "event" in msg:
            self.events.append(msg)
        return msg

    def greeting(self):
        msg = self._recv(time.monotonic() + self.timeout)
        if "QMP" not in msg:
            raise ConnectionError(f"not a QMP greeting: {msg}")
        self.execute({"execute": "qmp_capabilities"})

    def execute(self, cmd):
        cmd = dict(cmd)
        cmd["id"] = self.next_id
        self.next_id += 1
        print("qmp> " + json.dumps(cmd, separators=(",", ":")), flush=True)
        self.sock.sendall(json.dumps(cmd).encode() + b"\n")
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._recv(deadline)
            if msg.get("id") != cmd["id"]:
                continue
            if "error" in msg:
                raise RuntimeError(f"{cmd['execute']}: {msg['error'].get('class')}: {msg['error'].get('desc')}")
            return msg.get("return")

    def wait_event(self, name, want):
        def matches(ev):
            data = ev.get("data", {})
            return ev["event"] == name and all(str(data.get(k)) == v for k, v in want.items())

        deadline = time.monotonic() + self.timeout
        while True:
            for ev in self.events:
                if matches(ev):
                    self.events.remove(ev)
                    return ev
            try:
                self._recv(deadline)
            except TimeoutError:
                raise TimeoutError(f"no event {name} {want} within {self.timeout:g}s") from None


def main(argv):
    timeout = 30.0
    if len(argv) >= 2 and argv[0] == "--timeout":
        timeout = float(argv[1])
        argv = argv[2:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, steps = argv[0], argv[1:]
    try:
        q = Qmp(path, timeout)
        q.greeting()
        for step in steps:
            if step.startswith("event:"):
                name, *pairs = step[len("event:"):].split(":")
                want = dict(p.split("=", 1) for p in pairs)
                q.wait_event(name, want)
            else:
                q.execute(json.loads(step))
    except (OSError, ValueError, RuntimeError, ConnectionError, TimeoutError) as e:
        print(f"qmp: error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
