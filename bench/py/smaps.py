#!/usr/bin/env python3
"""Resident memory of a process by component, from /proc/PID/smaps.

    smaps.py PID [LABEL]        one JSON line: {"label":..., "VmRSS":..., "parts": {component: KiB}}
    smaps.py --table FILE...    a Markdown table of such lines, one column per line

Components: the program's own code and data, GStreamer's libraries and plugins, GLib, TLS and
crypto, codecs, text rendering (fonts, Pango, Cairo), other libraries; the malloc heap, thread
stacks (anonymous 8 MiB mappings, or [stack]), and other anonymous memory split at 1 MiB (video
frames and malloc arenas are large anonymous mappings)."""

import json
import re
import sys

GROUPS = [
    ("GStreamer plugins", re.compile(r"/gstreamer-1\.0/")),
    ("GStreamer libraries", re.compile(r"/libgst[^/]*\.so")),
    ("GLib, GObject, GIO", re.compile(r"/lib(glib|gobject|gio|gmodule)-2\.0\.so")),
    ("TLS and crypto", re.compile(r"/lib(crypto|ssl|nss3|nssutil3|softokn3|freebl|srtp2|gnutls|nettle|hogweed|gmp)[^/]*\.so")),
    ("codecs", re.compile(r"/lib(x264|openh264|av(codec|util|format|filter)|swresample|swscale|opus|vpx|dav1d|aom|speex|g722|webrtc|orc)[^/]*\.so")),
    ("text: fonts, Pango, Cairo", re.compile(r"(\.ttf|\.otf|/lib(pango|cairo|harfbuzz|freetype|fontconfig|pixman|fribidi|thai|datrie|graphite2|png16|brotli)[^/]*\.so|/fontconfig/)")),
    ("C and C++ runtime", re.compile(r"/lib(c|m|stdc\+\+|gcc_s|pthread|dl|rt)[.-][^/]*so")),
]


def parts(pid):
    exe = ""
    try:
        import os
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        pass
    out = {}
    name, size_kib = None, 0
    for line in open(f"/proc/{pid}/smaps"):
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$", line)
        if m:
            size_kib = (int(m.group(2), 16) - int(m.group(1), 16)) // 1024
            name = m.group(3).strip()
            continue
        if not line.startswith("Rss:"):
            continue
        rss = int(line.split()[1])
        if rss == 0:
            continue
        if name == exe or (exe and name == exe + " (deleted)"):
            key = "the program (code, data)"
        elif name == "[heap]":
            key = "malloc heap ([heap])"
        elif name == "[stack]" or (not name and size_kib in (8192, 8196)):
            key = "thread stacks"
        elif not name or name.startswith("[anon"):
            key = "anonymous, mappings of 1 MiB or more" if rss >= 1024 else "anonymous, smaller mappings"
        elif name.startswith("["):
            key = "kernel ([vdso], [vvar])"
        else:
            key = next((g for g, rx in GROUPS if rx.search(name)), "other libraries and files")
            if key == "other libraries and files":
                OTHER[name] = OTHER.get(name, 0) + rss
        out[key] = out.get(key, 0) + rss
    return out


# The files in "other libraries and files", by resident KiB (the largest go into the JSON line).
OTHER = {}


def status(pid):
    s = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "Threads"):
            s[k] = int(v.split()[0])
    return s


def table(files):
    cols = [json.loads(open(f).read()) for f in files]
    keys = sorted({k for c in cols for k in c["parts"]}, key=lambda k: -max(c["parts"].get(k, 0) for c in cols))
    mib = lambda kib: f"{kib / 1024:.1f}"
    print("| MiB | " + " | ".join(c["label"] for c in cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    for k in ("VmRSS", "RssAnon", "RssFile"):
        print(f"| **{k}** | " + " | ".join(mib(c["status"][k]) for c in cols) + " |")
    for k in keys:
        print(f"| {k} | " + " | ".join(mib(c["parts"].get(k, 0)) for c in cols) + " |")
    print("| threads | " + " | ".join(str(c["status"]["Threads"]) for c in cols) + " |")


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2:])
    else:
        pid = sys.argv[1]
        label = sys.argv[2] if len(sys.argv) > 2 else pid
        p = parts(pid)
        other = dict(sorted(OTHER.items(), key=lambda kv: -kv[1])[:8])
        print(json.dumps({"label": label, "status": status(pid), "parts": p, "largest_other": other}))
