#!/usr/bin/env python3
"""Drive a huis guest over its serial console (a QEMU unix socket).

Used by image/tests/run.sh. Needs a --dev image (root autologin on the
serial console). Every wait has a deadline; nothing here blocks forever.

  guest.py SOCKET wait-ready TIMEOUT LOG       wait for the boot check's verdict and a shell;
                                               prints the seconds from connect to ready and
                                               the verdict line
  guest.py SOCKET run TIMEOUT LOG -- CMD...    run CMD in the guest shell, print its output,
                                               exit with its status
  guest.py SOCKET wait-for TIMEOUT LOG REGEX   wait until REGEX shows on the console
"""

import os
import re
import socket
import sys
import time


class Console:
    def __init__(self, path, log_path, connect_timeout=30.0):
        self.path = path
        self.buf = ""
        self.log = open(log_path, "a", encoding="utf-8", errors="replace")
        self.stamp = 0.0
        self._connect(path, connect_timeout)
        self._stamp(f"connected ({' '.join(sys.argv[2:3])})")

    def _connect(self, path, connect_timeout):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise SystemExit(f"guest.py: cannot connect to {path}")
                time.sleep(0.2)
        self.sock.setblocking(False)

    def _stamp(self, what=""):
        # Host wall-clock marks in the log (at most one per 5 s), so slow
        # phases (shutdown, firmware, boot) can be timed afterwards.
        now = time.time()
        if what or now - self.stamp >= 5:
            self.log.write(f"\n<<host {time.strftime('%H:%M:%S', time.gmtime(now))} {what}>>\n")
            self.stamp = now

    def _pump(self, timeout):
        import select

        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return False
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            # QEMU exiting on the guest's reset may reset the connection
            # rather than close it: the same as an end of file.
            data = b""
        if not data:
            # QEMU exits on a guest reset (-no-reboot) and run.sh starts it
            # again: reconnect to the new console within the caller's deadline.
            self.sock.close()
            self._stamp("console closed: guest reset, reconnecting")
            self._connect(self.path, 120.0)
            return False
        text = data.decode("utf-8", errors="replace").replace("\r", "")
        self._stamp()
        self.log.write(text)
        self.log.flush()
        # Terminal control sequences (colours, bracketed paste) only get in the
        # way. The serial line delivers a few bytes at a time, so a sequence
        # can be split across reads: strip on the whole buffer, where an
        # unfinished one waits for its end.
        self.buf = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]", "", self.buf + text)
        return True

    def send(self, text):
        self.sock.setblocking(True)
        self.sock.sendall(text.encode())
        self.sock.setblocking(False)

    def expect(self, pattern, timeout):
        """Wait for pattern; consume the buffer up to the match. Returns the match."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                tail = self.buf[-2000:]
                raise TimeoutError(f"no /{pattern}/ within {timeout:.0f}s; console tail:\n{tail}")
            self._pump(min(left, 1.0))

    def shell_setup(self, timeout):
        """Get a quiet, predictable shell: no echo, a fixed prompt, no pagers or colour."""
        deadline = time.monotonic() + timeout
        while True:
            self.send("\n")
            try:
                self.expect(r"(root@\S+:.*# ?$|^huis# $)", 5)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        self.send("stty -echo cols 500; bind 'set enable-bracketed-paste off' 2>/dev/null; export PS1='huis# ' TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 PAGER=cat; dmesg -n 1\n")
        self.expect(r"^huis# $", 20)

    def run(self, cmd, timeout):
        tag = f"@@{os.getpid()}{int(time.monotonic() * 1000) % 1000000}@@"
        # The status line is printed with printf so the command text itself never matches.
        # The status goes on a line of its own even when the output does not
        # end in a newline; the regex takes that added newline off again.
        self.send(f"{cmd}; printf '\\n%s %d %s\\n' '{tag[:2]}' $? '{tag[2:]}'\n")
        m = self.expect(r"(?s)(.*?)\n" + re.escape(tag[:2]) + r" (\d+) " + re.escape(tag[2:]) + r"$", timeout)
        out = m.group(1)
        if out.startswith("huis# "):
            out = out[len("huis# "):]
        return int(m.group(2)), out


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    sock, verb, timeout, log = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    con = Console(sock, log)
    t0 = time.monotonic()
    try:
        if verb == "wait-ready":
            # The verdict: "marked good" or "failed its health check"; not
            # the "marked bad; rebooting" line that follows a failure.
            # Up to the end of the line: "$" alone also matches the end of a
            # half-received line.
            m = con.expect(r"huis(?:-boot-check| health check): (slot \S+ marked good [^\n]*|slot \S+ [^\n]*failed its health check[^\n]*)\n", timeout)
            ready = time.monotonic() - t0
            verdict = m.group(1)
            con.shell_setup(max(30.0, timeout - ready))
            print(f"{ready:.1f} {verdict}")
            return 0
        if verb == "wait-for":
            m = con.expect(sys.argv[5], timeout)
            print(f"{time.monotonic() - t0:.1f} {m.group(0)}")
            return 0
        if verb == "run":
            args = sys.argv[sys.argv.index("--") + 1:]
            con.shell_setup(30)
            rc, out = con.run(" ".join(args), timeout)
            sys.stdout.write(out)
            return rc
    except TimeoutError as e:
        print(f"guest.py: timeout: {e}", file=sys.stderr)
        return 124
    print(f"guest.py: unknown verb {verb}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
