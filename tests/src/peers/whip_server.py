#!/usr/bin/python3
"""A small WHIP (RFC 9725) and WHEP server for huis's tests, on aiortc and aiohttp.

POST /whip/<name>   an SDP offer to publish: answered 201 Created with a Location; aiortc
                    receives the media, counts the video frames it decodes and keeps the last
                    second of audio (for its dominant frequency and level).
POST /whep/<name>   an SDP offer to receive: answered the same way; aiortc sends a sine tone
                    (--tone Hz) and generated video frames.
DELETE <Location>   closes that session and records it.
GET /stats          JSON: the sessions (kind, name, state, deleted, figures), the refusals.

With --token, POST and DELETE need `Authorization: Bearer <token>` (401 otherwise). A name
starting with "malformed" is answered 201 with a Location and a body that is no SDP, for the
bad-input tests. No STUN/TURN: ICE has the host candidates of the interfaces it finds.
"""

import argparse
import asyncio
import fractions
import itertools
import json
import logging
import sys
import time

import av
import numpy as np
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack

RATE = 48000
MAX_BODY = 64 * 1024
log = logging.getLogger("whip-server")


class Tone(MediaStreamTrack):
    """A sine of `hz`, 20 ms frames in real time."""

    kind = "audio"

    def __init__(self, hz):
        super().__init__()
        self.hz = hz
        self.sent = 0
        self.start = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        n = RATE // 50
        if self.start is None:
            self.start = time.monotonic()
        else:
            wait = self.start + self.sent / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (np.arange(n) + self.sent) / RATE
        data = (0.3 * 32767 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.sent
        frame.time_base = fractions.Fraction(1, RATE)
        self.sent += n
        return frame


class Bars(VideoStreamTrack):
    """320x240 frames of moving colour bars, at aiortc's pace (30 fps)."""

    def __init__(self):
        super().__init__()
        x = np.arange(320, dtype=np.uint16)
        self.base = np.zeros((240, 320, 3), dtype=np.uint8)
        self.base[:, :, 0] = (x * 4 % 256).astype(np.uint8)
        self.base[:, :, 1] = 128
        self.base[:, :, 2] = (255 - x * 2 % 256).astype(np.uint8)
        self.sent = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        img = np.roll(self.base, self.sent * 4, axis=1)
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts = pts
        frame.time_base = time_base
        self.sent += 1
        return frame


class Session:
    ids = itertools.count(1)

    def __init__(self, kind, name):
        self.id = next(Session.ids)
        self.kind = kind
        self.name = name
        self.pc = None
        self.deleted = False
        self.frames_decoded = 0
        self.audio_frames = 0
        self.audio = np.zeros(0, dtype=np.float32)
        self.tone = None
        self.video = None

    def audio_figures(self):
        """(dominant frequency in Hz, RMS level in dBFS) of the last second received."""
        a = self.audio
        if len(a) < RATE // 10:
            return 0.0, -120.0
        rms = float(np.sqrt(np.mean(a * a)))
        level = 20 * np.log10(max(rms, 1e-6))
        spectrum = np.abs(np.fft.rfft(a * np.hanning(len(a))))
        spectrum[0] = 0
        peak = float(np.argmax(spectrum)) * RATE / len(a)
        return peak, float(level)

    def codecs(self):
        """The negotiated codec of each kind (aiortc keeps them on the transceivers)."""
        out = {}
        for t in self.pc.getTransceivers() if self.pc else []:
            codecs = getattr(t, "_codecs", None)
            if codecs:
                out[t.kind] = codecs[0].mimeType
        return out

    def stats(self):
        peak, level = self.audio_figures()
        codecs = self.codecs()
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "state": self.pc.connectionState if self.pc else "none",
            "ice_state": self.pc.iceConnectionState if self.pc else "none",
            "deleted": self.deleted,
            "frames_decoded": self.frames_decoded,
            "audio_frames": self.audio_frames,
            "audio_peak_hz": peak,
            "audio_level_dbfs": level,
            "frames_sent": self.video.sent if self.video else 0,
            "audio_samples_sent": self.tone.sent if self.tone else 0,
            "audio_codec": codecs.get("audio", ""),
            "video_codec": codecs.get("video", ""),
        }

    async def consume(self, track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                self.frames_decoded += 1
                continue
            self.audio_frames += 1
            arr = frame.to_ndarray()
            if frame.format.is_planar:
                mono = arr[0]
            else:
                mono = arr.reshape(-1)[:: len(frame.layout.channels)]
            mono = mono.astype(np.float32) / 32768.0
            self.audio = np.concatenate((self.audio, mono))[-frame.sample_rate :]


class Server:
    def __init__(self, args):
        self.args = args
        self.sessions = {}
        self.refused = 0
        self.posts = 0

    def authorised(self, request):
        if not self.args.token:
            return True
        return request.headers.get("Authorization", "") == "Bearer " + self.args.token

    def unauthorised(self, request):
        self.refused += 1
        log.info("%s %s refused: wrong or missing bearer token", request.method, request.path)
        return web.Response(status=401, text="wrong or missing bearer token\n", headers={"WWW-Authenticate": "Bearer"})

    async def offer(self, request, kind):
        self.posts += 1
        if not self.authorised(request):
            return self.unauthorised(request)
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="an offer is application/sdp\n")
        name = request.match_info["name"]
        offer = await request.text()
        sess = Session(kind, name)
        self.sessions[sess.id] = sess
        location = "/resource/%d" % sess.id
        log.info("POST %s: %s session %d for %r, offer of %d bytes", request.path, kind, sess.id, name, len(offer))
        if name.startswith("malformed"):
            sess.pc = None
            return web.Response(
                status=201, text="this is not an SDP answer\n", content_type="application/sdp", headers={"Location": location}
            )
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sess.pc = pc

        @pc.on("connectionstatechange")
        async def changed():
            log.info("session %d (%s %r): connection %s", sess.id, kind, name, pc.connectionState)

        @pc.on("track")
        def on_track(track):
            log.info("session %d: receiving %s", sess.id, track.kind)
            asyncio.ensure_future(sess.consume(track))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        if kind == "whep":
            sess.tone = Tone(self.args.tone)
            sess.video = Bars()
            pc.addTrack(sess.tone)
            pc.addTrack(sess.video)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return web.Response(
            status=201,
            body=pc.localDescription.sdp.encode(),
            content_type="application/sdp",
            headers={"Location": location},
        )

    async def whip(self, request):
        return await self.offer(request, "whip")

    async def whep(self, request):
        return await self.offer(request, "whep")

    async def delete(self, request):
        if not self.authorised(request):
            return self.unauthorised(request)
        sess = self.sessions.get(int(request.match_info["id"]))
        if sess is None or sess.deleted:
            return web.Response(status=404, text="no such session\n")
        sess.deleted = True
        log.info("DELETE %s: %s session %d for %r closed", request.path, sess.kind, sess.id, sess.name)
        if sess.pc:
            await sess.pc.close()
        return web.Response(status=200)

    async def stats(self, request):
        body = {
            "sessions": [s.stats() for s in self.sessions.values()],
            "posts": self.posts,
            "refused": self.refused,
        }
        return web.Response(text=json.dumps(body), content_type="application/json")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", default="", help="the bearer token POST and DELETE need (none: any)")
    p.add_argument("--tone", type=float, default=440.0, help="the WHEP audio's frequency (Hz)")
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    server = Server(args)
    app = web.Application(client_max_size=MAX_BODY)
    app.add_routes(
        [
            web.post("/whip/{name}", server.whip),
            web.post("/whep/{name}", server.whep),
            web.delete("/resource/{id:[0-9]+}", server.delete),
            web.get("/stats", server.stats),
        ]
    )
    web.run_app(app, host=args.listen, port=args.port, print=lambda m: log.info("%s", m), access_log=None)


if __name__ == "__main__":
    main()
