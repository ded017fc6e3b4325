//! `org.huis.Call1` objects at `/org/huis/Room1/Calls/<n>`, one per call,
//! added to and removed from the ObjectManager at `/org/huis/Room1`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use zbus::{OwnedVariant, Variant, interface};

use crate::dbus::HuisError;
use crate::media::{CallStats, VideoStats};
use crate::room::{CallOp, Command, Reply};

#[derive(Debug, Clone, Default)]
pub struct CallProps {
    pub remote_uri: String,
    pub direction: String,
    pub state: String,
    pub audio_codec: String,
    /// `H264/90000 1280x720` when the call has video, else "".
    pub video_codec: String,
    pub stats: HashMap<String, f64>,
}

pub fn path(n: u32) -> String {
    format!("/org/huis/Room1/Calls/{n}")
}

pub struct Call1 {
    n: u32,
    props: Arc<Mutex<CallProps>>,
    tx: mpsc::Sender<Command>,
}

impl Call1 {
    async fn op(&self, op: CallOp) -> Result<(), HuisError> {
        let (rtx, rrx) = oneshot::channel::<Reply>();
        self.tx
            .send(Command::Call(self.n, op, rtx))
            .await
            .map_err(|_| HuisError::Failed("huisd is shutting down".into()))?;
        rrx.await.map_err(|_| HuisError::Failed("huisd is shutting down".into()))?.map(drop)
    }
}

#[interface(name = "org.huis.Call1")]
impl Call1 {
    #[zbus(property)]
    fn remote_uri(&self) -> String {
        self.props.lock().unwrap().remote_uri.clone()
    }
    /// incoming or outgoing.
    #[zbus(property)]
    fn direction(&self) -> String {
        self.props.lock().unwrap().direction.clone()
    }
    /// dialing, alerting, incoming, active or held.
    #[zbus(property)]
    fn state(&self) -> String {
        self.props.lock().unwrap().state.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn protocol(&self) -> &str {
        "sip"
    }
    /// Whether the media is encrypted (SRTP); plain RTP for now.
    #[zbus(property)]
    fn encrypted(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn audio_codec(&self) -> String {
        self.props.lock().unwrap().audio_codec.clone()
    }
    #[zbus(property)]
    fn video_codec(&self) -> String {
        self.props.lock().unwrap().video_codec.clone()
    }
    /// packets_sent, packets_received, packets_lost, jitter_ms, rtt_ms, bitrate_kbps, … (updated every second).
    #[zbus(property)]
    fn stats(&self) -> HashMap<String, OwnedVariant> {
        self.props
            .lock()
            .unwrap()
            .stats
            .iter()
            .map(|(k, v)| (k.clone(), OwnedVariant::try_from(Variant::from(*v)).expect("a double is always owned")))
            .collect()
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
    async fn hangup(&self) -> Result<(), HuisError> {
        self.op(CallOp::Hangup).await
    }
    async fn answer(&self) -> Result<(), HuisError> {
        self.op(CallOp::Answer).await
    }
}

pub async fn serve(conn: &zbus::Connection, n: u32, props: Arc<Mutex<CallProps>>, tx: mpsc::Sender<Command>) {
    if let Err(e) = conn.object_server().at(path(n), Call1 { n, props, tx }).await {
        tracing::warn!(error = %e, "cannot publish the call on D-Bus");
    }
}

pub async fn remove(conn: &zbus::Connection, n: u32) {
    let _ = conn.object_server().remove::<Call1, _>(path(n)).await;
}

async fn emit(conn: &zbus::Connection, n: u32, name: &'static str, value: Variant<'_>) {
    let Ok(em) = zbus::object_server::SignalEmitter::new(conn, path(n)) else { return };
    let map: HashMap<&str, Variant<'_>> = [(name, value)].into_iter().collect();
    let iface = zbus::names::InterfaceName::from_static_str_unchecked("org.huis.Call1");
    let _ = zbus::fdo::Properties::properties_changed(&em, iface, map, std::borrow::Cow::Borrowed(&[])).await;
}

pub async fn emit_state(conn: &zbus::Connection, n: u32, state: &str) {
    emit(conn, n, "State", Variant::from(state)).await;
}

pub async fn emit_stats(conn: &zbus::Connection, n: u32) {
    // Invalidate rather than resend: readers fetch the fresh dictionary.
    let Ok(em) = zbus::object_server::SignalEmitter::new(conn, path(n)) else { return };
    let iface = zbus::names::InterfaceName::from_static_str_unchecked("org.huis.Call1");
    let _ =
        zbus::fdo::Properties::properties_changed(&em, iface, HashMap::new(), std::borrow::Cow::Borrowed(&["Stats"]))
            .await;
}

pub fn stats_map(s: &CallStats) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    m.insert("packets_sent".into(), s.packets_sent as f64);
    m.insert("packets_received".into(), s.packets_received as f64);
    m.insert("packets_lost".into(), s.packets_lost as f64);
    m.insert("jitter_ms".into(), s.jitter_ms);
    m.insert("bitrate_kbps".into(), s.bitrate_kbps);
    m.insert("rtcp_received".into(), s.rtcp_received as f64);
    if let Some(r) = s.rtt_ms {
        m.insert("rtt_ms".into(), r);
    }
    if let Some(l) = s.remote_packets_lost {
        m.insert("remote_packets_lost".into(), l as f64);
    }
    m
}

/// The figures of a call's video, for Video1.Stats and (prefixed `video_`) Call1.Stats.
pub fn video_stats_map(s: &VideoStats) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    for (k, v) in [
        ("send_width", f64::from(s.send_width)),
        ("send_height", f64::from(s.send_height)),
        ("frames_sent", s.frames_sent as f64),
        ("keyframes_sent", s.keyframes_sent as f64),
        ("frames_decoded", s.frames_decoded as f64),
        ("recv_width", f64::from(s.recv_width)),
        ("recv_height", f64::from(s.recv_height)),
        ("keyframe_requests_received", s.keyframe_requests_received as f64),
        ("keyframe_requests_answered", s.keyframe_requests_answered as f64),
        ("keyframe_answer_max_ms", s.keyframe_answer_max_ms as f64),
        ("keyframe_requests_sent", s.keyframe_requests_sent as f64),
        ("bitrate_kbps", f64::from(s.bitrate_kbps)),
        ("remb_kbps", f64::from(s.remb_kbps)),
        ("tmmbr_kbps", f64::from(s.tmmbr_kbps)),
        ("remote_loss_percent", s.remote_loss_percent),
        ("packets_received", s.packets_received as f64),
        ("packets_lost", s.packets_lost as f64),
        ("retransmissions_requested", s.retransmissions_requested as f64),
        ("retransmissions_received", s.retransmissions_received as f64),
        ("packets_unrepaired", s.packets_unrepaired as f64),
        ("retransmission_rtt_ms", s.retransmission_rtt_ms),
        ("retransmission_requests_received", s.retransmission_requests_received as f64),
        ("retransmissions_sent", s.retransmissions_sent as f64),
        ("packets_late", s.packets_late as f64),
        ("jitter_buffer_ms", f64::from(s.jitter_buffer_ms)),
    ] {
        m.insert(k.to_string(), v);
    }
    m
}
