//! `org.huis.Call1` objects at `/org/huis/Room1/Calls/<n>`, one per call, added to and removed
//! from the ObjectManager at `/org/huis/Room1` as calls come and go on the status feed.

use std::collections::HashMap;

use tokio::sync::watch;
use zbus::{OwnedVariant, Variant, interface};

use super::HuisError;
use super::iface::RoomLink;
use crate::call::CallId;
use crate::room::{CallOp, Command};
use crate::status::{CallStatus, Calls};

pub fn path(n: u32) -> String {
    format!("/org/huis/Room1/Calls/{n}")
}

pub struct Call1 {
    pub id: CallId,
    pub calls: watch::Receiver<Calls>,
    pub room: RoomLink,
}

impl Call1 {
    async fn op(&self, op: CallOp) -> Result<(), HuisError> {
        self.room.ask(|r| Command::Call(self.id.0, op, r)).await.map(drop)
    }

    fn read<T: Default>(&self, f: impl FnOnce(&CallStatus) -> T) -> T {
        self.calls.borrow().get(&self.id).map(f).unwrap_or_default()
    }
}

#[interface(name = "org.huis.Call1")]
impl Call1 {
    #[zbus(property)]
    fn remote_uri(&self) -> String {
        self.read(|c| c.info.remote.clone())
    }
    /// incoming or outgoing.
    #[zbus(property)]
    fn direction(&self) -> String {
        self.read(|c| c.info.direction.name().to_owned())
    }
    /// dialing, alerting, incoming, active or held.
    #[zbus(property)]
    fn state(&self) -> String {
        self.read(|c| c.info.state.name().to_owned())
    }
    /// sip or webrtc.
    #[zbus(property(emits_changed_signal = "const"))]
    fn protocol(&self) -> String {
        self.read(|c| c.info.protocol.name().to_owned())
    }
    /// True only when the call's signalling runs over TLS and every media stream is encrypted
    /// (SRTP with SDES keys, or DTLS-SRTP with the peer's certificate checked against its SDP).
    /// Plain SIP over UDP/TCP is never "encrypted", whatever the media.
    #[zbus(property)]
    fn encrypted(&self) -> bool {
        self.read(|c| c.info.encrypted)
    }
    /// How the media is protected and where its keys came from:
    /// `DTLS-SRTP AES_CM_128_HMAC_SHA1_80`, `SDES AES_CM_128_HMAC_SHA1_80` (or another suite),
    /// `DTLS-SRTP (handshake)` while the handshake runs, `none` for plain RTP. When audio and
    /// video differ: `audio <…>; video <…>`.
    #[zbus(property)]
    fn media_encryption(&self) -> String {
        self.read(|c| c.info.media_encryption.clone())
    }
    #[zbus(property)]
    fn audio_codec(&self) -> String {
        self.read(|c| c.info.audio_codec.clone())
    }
    #[zbus(property)]
    fn video_codec(&self) -> String {
        self.read(|c| c.info.video_codec.clone())
    }
    /// The call's presentation channel: `none` (the call has none), `free`, `requesting`,
    /// `sending` (we hold the floor) or `receiving` (the far end does).
    #[zbus(property)]
    fn presentation(&self) -> String {
        self.read(|c| c.info.presentation.floor.name().to_owned())
    }
    /// The presentation's width, height and frame rate: what we send while `sending`, what
    /// arrives while `receiving` (frame rate 0: not measured); zeros otherwise.
    #[zbus(property)]
    fn content_mode(&self) -> (u32, u32, u32) {
        self.read(|c| {
            let p = c.info.presentation;
            (p.width, p.height, p.framerate)
        })
    }
    /// packets_sent, packets_received, packets_lost, jitter_ms, rtt_ms, bitrate_kbps, … the
    /// video's as `video_*` and the presentation stream's as `content_*` (every second).
    #[zbus(property)]
    fn stats(&self) -> HashMap<String, OwnedVariant> {
        self.read(|c| {
            let audio = c.stats.audio.iter().map(|(k, v)| (k.clone(), *v));
            let video = c.stats.video.iter().map(|(k, v)| (format!("video_{k}"), *v));
            let content = c.stats.content.iter().map(|(k, v)| (format!("content_{k}"), *v));
            audio
                .chain(video)
                .chain(content)
                .map(|(k, v)| (k, OwnedVariant::try_from(Variant::from(v)).expect("a double is always owned")))
                .collect()
        })
    }

    async fn send_dtmf(&self, digits: String) -> Result<(), HuisError> {
        self.op(CallOp::Dtmf(digits)).await
    }
    async fn hold(&self) -> Result<(), HuisError> {
        self.op(CallOp::Hold(true)).await
    }
    async fn resume(&self) -> Result<(), HuisError> {
        self.op(CallOp::Hold(false)).await
    }
    /// Sends and receives video in the call from now on (a new offer with video).
    async fn start_video(&self) -> Result<(), HuisError> {
        self.op(CallOp::Video(true)).await
    }
    /// Stops the call's video both ways (a new offer that drops it); audio goes on.
    async fn stop_video(&self) -> Result<(), HuisError> {
        self.op(CallOp::Video(false)).await
    }
    async fn hangup(&self) -> Result<(), HuisError> {
        self.op(CallOp::Hangup).await
    }
    async fn answer(&self) -> Result<(), HuisError> {
        self.op(CallOp::Answer).await
    }
}
