//! From the status feed to D-Bus: `PropertiesChanged` for what changed, the signals for what
//! happened, and the `Call1` objects of the calls in progress. The only place that emits.

use std::collections::HashMap;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use zbus::{Connection, Variant};

use super::call::{Call1, path as call_path};
use super::iface::{Config1, Room1, RoomLink, Update1};
use super::{AUDIO_PATH, CONFIG_PATH, ROOM_PATH, VIDEO_PATH};
use crate::status::{AudioStatus, Calls, RoomStatus, Slot, StatusEvent, Subscriber, UpdateStatus, VideoStatus};

/// `Update1.Slots` as D-Bus carries it.
pub fn slots_tuple(slots: &[Slot]) -> Vec<(String, String, String, String)> {
    slots.iter().map(|s| (s.bootname.clone(), s.state.clone(), s.boot_status.clone(), s.version.clone())).collect()
}

/// What D-Bus clients have been told so far.
struct Told {
    room: RoomStatus,
    audio: AudioStatus,
    video: VideoStatus,
    update: UpdateStatus,
    calls: Calls,
}

type Changes = Vec<(&'static str, Variant<'static>)>;

/// Adds `name` to `changes` if the value differs from what was told.
fn diff<T: PartialEq + Clone + Into<Variant<'static>>>(changes: &mut Changes, name: &'static str, old: &T, new: &T) {
    if old != new {
        changes.push((name, new.clone().into()));
    }
}

/// Follows the feed until it closes (huisd stops). `flush` requests (from methods that changed
/// something) are answered once what changed is emitted.
pub async fn run(
    conn: Connection,
    mut feed: Subscriber,
    room: RoomLink,
    mut flush: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut told = Told {
        room: feed.room.borrow_and_update().clone(),
        audio: feed.audio.borrow_and_update().clone(),
        video: feed.video.borrow_and_update().clone(),
        update: feed.update.borrow_and_update().clone(),
        calls: Calls::new(),
    };
    loop {
        told.catch_up(&conn, &mut feed, &room).await;
        let event = tokio::select! {
            Some(done) = flush.recv() => {
                told.catch_up(&conn, &mut feed, &room).await;
                let _ = done.send(());
                None
            }
            r = feed.room.changed() => match r { Ok(()) => None, Err(_) => break },
            r = feed.audio.changed() => match r { Ok(()) => None, Err(_) => break },
            r = feed.video.changed() => match r { Ok(()) => None, Err(_) => break },
            r = feed.calls.changed() => match r { Ok(()) => None, Err(_) => break },
            r = feed.update.changed() => match r { Ok(()) => None, Err(_) => break },
            e = feed.events.recv() => match e {
                Ok(e) => Some(e),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("D-Bus missed {n} status events (huisd is overloaded)");
                    None
                }
                Err(RecvError::Closed) => break,
            },
        };
        if let Some(e) = event {
            // The state that goes with an event is published before it (LastError before
            // CallEnded, the new Call1 before IncomingCall).
            told.catch_up(&conn, &mut feed, &room).await;
            signal(&conn, e).await;
        }
    }
}

impl Told {
    /// Emits what changed since the last time.
    async fn catch_up(&mut self, conn: &Connection, feed: &mut Subscriber, link: &RoomLink) {
        let room = feed.room.borrow_and_update().clone();
        let mut c = Changes::new();
        let o = &self.room;
        if o.state != room.state {
            c.push(("State", room.state.name().to_owned().into()));
        }
        diff(&mut c, "RoomName", &o.room_name, &room.room_name);
        diff(&mut c, "Muted", &o.muted, &room.muted);
        diff(&mut c, "LastError", &o.last_error, &room.last_error);
        diff(&mut c, "Leds", &o.leds, &room.leds);
        diff(&mut c, "Registration", &o.registration, &room.registration);
        diff(&mut c, "SipUri", &o.sip_uri, &room.sip_uri);
        diff(&mut c, "ContentInput", &o.content_input, &room.content_input);
        diff(&mut c, "Presentation", &o.presentation, &room.presentation);
        diff(&mut c, "PresentationHolder", &o.presentation_holder, &room.presentation_holder);
        let mode = |r: &RoomStatus| (r.content_width, r.content_height, r.content_framerate);
        diff(&mut c, "ContentMode", &mode(o), &mode(&room));
        emit(conn, ROOM_PATH, "org.huis.Room1", c).await;
        self.room = room;

        let audio = feed.audio.borrow_and_update().clone();
        let mut c = Changes::new();
        let o = &self.audio;
        diff(&mut c, "TalkerAzimuth", &o.talker_azimuth, &audio.talker_azimuth);
        diff(&mut c, "TalkerActive", &o.talker_active, &audio.talker_active);
        diff(&mut c, "InputLevel", &o.input_level, &audio.input_level);
        diff(&mut c, "OutputLevel", &o.output_level, &audio.output_level);
        diff(&mut c, "EchoCancellation", &o.echo_cancellation, &audio.echo_cancellation);
        diff(&mut c, "Beamforming", &o.beamforming, &audio.beamforming);
        diff(&mut c, "NoiseSuppression", &o.noise_suppression, &audio.noise_suppression);
        diff(&mut c, "GainControl", &o.gain_control, &audio.gain_control);
        diff(&mut c, "OutputVolume", &o.output_volume, &audio.output_volume);
        emit(conn, AUDIO_PATH, "org.huis.Audio1", c).await;
        self.audio = audio;

        let video = feed.video.borrow_and_update().clone();
        let mut c = Changes::new();
        diff(&mut c, "SelfView", &self.video.self_view, &video.self_view);
        emit(conn, VIDEO_PATH, "org.huis.Video1", c).await;
        self.video = video;

        let update = feed.update.borrow_and_update().clone();
        let mut c = Changes::new();
        let o = &self.update;
        diff(&mut c, "Operation", &o.operation, &update.operation);
        diff(&mut c, "Progress", &o.progress, &update.progress);
        diff(&mut c, "LastError", &o.last_error, &update.last_error);
        diff(&mut c, "BootSlot", &o.boot_slot, &update.boot_slot);
        diff(&mut c, "Compatible", &o.compatible, &update.compatible);
        if o.slots != update.slots {
            c.push(("Slots", slots_tuple(&update.slots).into()));
        }
        emit(conn, ROOM_PATH, "org.huis.Update1", c).await;
        self.update = update;

        let calls = feed.calls.borrow_and_update().clone();
        self.catch_up_calls(conn, &calls, feed, link).await;
        self.calls = calls;
    }

    /// Adds and removes `Call1` objects, and emits what changed on the others.
    async fn catch_up_calls(&self, conn: &Connection, calls: &Calls, feed: &Subscriber, link: &RoomLink) {
        let server = conn.object_server();
        for id in self.calls.keys().filter(|id| !calls.contains_key(id)) {
            let _ = server.remove::<Call1, _>(call_path(id.0)).await;
        }
        for (id, now) in calls {
            let Some(old) = self.calls.get(id) else {
                let obj = Call1 { id: *id, calls: feed.calls.clone(), room: link.clone() };
                if let Err(e) = server.at(call_path(id.0), obj).await {
                    tracing::warn!(error = %e, "cannot publish the call on D-Bus");
                }
                continue;
            };
            let mut c = Changes::new();
            if old.info.state != now.info.state {
                c.push(("State", now.info.state.name().to_owned().into()));
            }
            diff(&mut c, "Encrypted", &old.info.encrypted, &now.info.encrypted);
            diff(&mut c, "MediaEncryption", &old.info.media_encryption, &now.info.media_encryption);
            diff(&mut c, "AudioCodec", &old.info.audio_codec, &now.info.audio_codec);
            diff(&mut c, "VideoCodec", &old.info.video_codec, &now.info.video_codec);
            if old.info.presentation.floor != now.info.presentation.floor {
                c.push(("Presentation", now.info.presentation.floor.name().to_owned().into()));
            }
            let mode = |p: &crate::call::Presentation| (p.width, p.height, p.framerate);
            diff(&mut c, "ContentMode", &mode(&old.info.presentation), &mode(&now.info.presentation));
            let path = call_path(id.0);
            emit(conn, &path, "org.huis.Call1", c).await;
            if old.stats != now.stats {
                // Invalidate rather than resend: readers fetch the fresh dictionary.
                invalidate(conn, &path, "org.huis.Call1", &["Stats"]).await;
            }
        }
    }
}

async fn signal(conn: &Connection, e: StatusEvent) {
    let emitter = |p: &'static str| zbus::object_server::SignalEmitter::new(conn, p);
    let r = match e {
        StatusEvent::IncomingCall { remote } => match emitter(ROOM_PATH) {
            Ok(em) => Room1::incoming_call(&em, &remote).await,
            Err(e) => Err(e),
        },
        StatusEvent::CallEnded { reason } => match emitter(ROOM_PATH) {
            Ok(em) => Room1::call_ended(&em, &reason).await,
            Err(e) => Err(e),
        },
        StatusEvent::ConfigChanged { key, value } => match emitter(CONFIG_PATH) {
            Ok(em) => Config1::changed(&em, &key, &value).await,
            Err(e) => Err(e),
        },
        StatusEvent::UpdateCompleted { result, message } => match emitter(ROOM_PATH) {
            Ok(em) => Update1::completed(&em, result, &message).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, "could not emit a signal");
    }
}

/// Emits `PropertiesChanged` with new values.
async fn emit(conn: &Connection, path: &str, iface: &'static str, changes: Changes) {
    if changes.is_empty() {
        return;
    }
    let Ok(em) = zbus::object_server::SignalEmitter::new(conn, path) else { return };
    let map: HashMap<&str, Variant<'_>> = changes.into_iter().collect();
    let name = zbus::names::InterfaceName::from_static_str_unchecked(iface);
    if let Err(e) = zbus::fdo::Properties::properties_changed(&em, name, map, std::borrow::Cow::Borrowed(&[])).await {
        tracing::debug!(error = %e, "could not emit a property change");
    }
}

/// Emits `PropertiesChanged` invalidating `names`.
async fn invalidate(conn: &Connection, path: &str, iface: &'static str, names: &[&str]) {
    let Ok(em) = zbus::object_server::SignalEmitter::new(conn, path) else { return };
    let name = zbus::names::InterfaceName::from_static_str_unchecked(iface);
    let _ =
        zbus::fdo::Properties::properties_changed(&em, name, HashMap::new(), std::borrow::Cow::Borrowed(names)).await;
}
