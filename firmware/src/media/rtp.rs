//! The RTP transport of one media stream, shared by the call's audio ([`super::session`]) and
//! video ([`super::video`]): rtpbin with one RTP session, the UDP sockets bound for SDP, RTCP on
//! its own port or muxed with RTP (RFC 5761), SDES-SRTP and RFC 4588 retransmission.
//!
//! ```text
//!  send:    codec chain ─▶ send_pad() ─▶ rtpbin: [rtprtxsend] ─▶ rtpsession ─▶ [srtpenc]
//!             ─▶ udpsink on the RTP socket ─▶ remote RTP address
//!           rtpsession's RTCP ─▶ [srtpenc] ─▶ udpsink on the RTCP socket (with rtcp-mux: the
//!             RTP socket) ─▶ remote RTCP address
//!  receive: udpsrc on the RTP socket ─▶ rtpbin: [srtpdec] ─▶ rtpsession ─▶ [rtprtxreceive]
//!             ─▶ jitter buffer per SSRC ─▶ payload type demuxer
//!             ─▶ on_receive(pipeline, pad, payload type) ─▶ codec chain
//!           RTCP: udpsrc on the RTCP socket ─▶ rtpbin: [srtpdec] ─▶ rtpsession
//!             with rtcp-mux: a probe on the RTP udpsrc ─▶ appsrc ─▶ rtpbin (RTCP input),
//!             or with SRTP, srtpdec separates SRTCP from SRTP itself (as in WebRTC)
//! ```
//!
//! `[...]`: only when configured. One srtpenc and one srtpdec serve RTP, RTCP and the RTX
//! stream; probes on the UDP elements keep the [`Activity`] figures.
//!
//! **The interface the codec chains use.** A codec chain says in [`TransportParams`] which
//! payload types it receives (their RTP caps) and which are retransmitted, and then uses only:
//! - [`RtpTransport::send_pad`]: the sink pad its payloaded RTP goes into (one stream, which
//!   already carries its payload types and SSRC);
//! - [`RtpTransport::on_receive`]: called with each received stream's src pad and payload
//!   type, to attach a depayloader and decoder;
//! - afterwards: [`RtpTransport::rtp_session`] (rtpsession's statistics and feedback signals),
//!   the jitter buffers' figures and latency, RTX counters, [`Activity`] (and waiting for the
//!   last packets and the BYE to leave), [`RtpTransport::on_remote_bye`],
//!   [`RtpTransport::set_remote`], [`RtpTransport::send_rtcp`] (what rtpsession does not
//!   write), and [`RtpTransport::close`] to free the ports.
//!
//! No pad name of rtpbin, no UDP or SRTP element reaches the codec chains; only
//! `rtp_session` is rtpbin's own object, an RTPSession, which the rtpbin inside `webrtcbin` has
//! too. So a transport over `webrtcbin` (DTLS-SRTP, ICE) could offer the same, and the codec
//! chains would stay as they are.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_app as gst_app;

use gio::prelude::*;
use gst::glib;
use gst::prelude::*;

use super::dtls::{DtlsParams, DtlsState, Protection};
use super::elements::{link_pads, make, request_pad, static_pad};
use super::{MediaError, RtpSockets, SrtpParams, SrtpProfile};

/// The longest regular RTCP interval with retransmission (see where it is used).
const RTX_RTCP_INTERVAL: Duration = Duration::from_millis(100);

/// Names of the retransmission elements, to read their counters.
const RTX_SEND: &str = "rtx-send";
const RTX_RECEIVE: &str = "rtx-receive";

/// What the transport is built from: the sockets and the far end from SDP, and what the codec
/// chain sends and receives.
pub(super) struct TransportParams<'a> {
    /// Local RTP and RTCP sockets, bound before the SDP was written.
    pub sockets: &'a RtpSockets,
    pub remote_rtp: SocketAddr,
    /// `None`: RTP port + 1, or the RTP address with rtcp-mux.
    pub remote_rtcp: Option<SocketAddr>,
    /// RTP and RTCP share the RTP socket both ways.
    pub rtcp_mux: bool,
    pub srtp: Option<&'a SrtpParams>,
    /// DTLS-SRTP (exclusive with `srtp`): one handshake on the RTP socket, and one on the RTCP
    /// socket without rtcp-mux.
    pub dtls: Option<&'a DtlsParams>,
    /// DSCP code point for our packets; `None` leaves the sockets alone.
    pub dscp: Option<u8>,
    pub cname: &'a str,
    pub jitter_buffer: Duration,
    /// Minimum regular RTCP interval.
    pub rtcp_interval: Duration,
    /// RTP/AVPF (RFC 4585): feedback goes out early instead of with the next regular report.
    pub avpf: bool,
    /// The jitter buffer reports each packet missing at its deadline downstream (a
    /// GstRTPPacketLost event), for decoders that conceal losses.
    pub report_lost: bool,
    /// RTP caps of every payload type we receive (each with its `payload` field), the main
    /// format first: the receiving socket's packets are typed with it.
    pub recv_formats: Vec<gst::Caps>,
    /// Payload types not in `recv_formats` get the main format's caps and reach
    /// [`RtpTransport::on_receive`] too; otherwise the jitter buffer drops them.
    pub recv_other_payloads: bool,
    pub rtx: Option<Retransmission>,
}

/// RFC 4588 retransmission (SSRC-multiplexed) of one payload type each way, with the NACKs
/// (RFC 4585) that ask for it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retransmission {
    /// The payload type we send, and the RTX payload type we retransmit it with.
    pub send_pt: u8,
    pub send_rtx_pt: u8,
    /// The payload type we receive, and the RTX payload type the peer retransmits it with
    /// (its caps are in [`TransportParams::recv_formats`]).
    pub recv_pt: u8,
    pub recv_rtx_pt: u8,
    /// RTP clock rate of what we send.
    pub clock_rate: u32,
    /// How long sent packets are kept for retransmission.
    pub keep: Duration,
}

/// Retransmission counters (RTX configured; otherwise all 0).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RtxCounts {
    /// NACKed packets the peer asked for, and those we could retransmit.
    pub requests_received: u64,
    pub sent: u64,
    /// Retransmitted packets received and put back into their stream.
    pub received: u64,
}

/// What arrived and left on the wire, updated by probes on the UDP elements and rtpbin's send
/// pads.
pub(super) struct Activity {
    epoch: Instant,
    /// ms since `epoch` + 1 of the last RTP / RTCP packet received, 0 = never.
    last_rtp_ms: AtomicU64,
    last_rtcp_ms: AtomicU64,
    /// RTCP packets received (compound packets, as they arrive on the socket).
    rtcp_received: AtomicU64,
    /// Set when the send path's EOS left rtpbin, and when our BYE did (then on its way to the
    /// socket, through DTLS-SRTP when that protects the call).
    send_eos: AtomicBool,
    bye_sent: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_rtp_ms: AtomicU64::new(0),
            last_rtcp_ms: AtomicU64::new(0),
            rtcp_received: AtomicU64::new(0),
            send_eos: AtomicBool::new(false),
            bye_sent: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn rtp_arrived(&self) {
        self.last_rtp_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn rtcp_arrived(&self) {
        self.last_rtcp_ms.store(self.now_ms(), Ordering::Relaxed);
        self.rtcp_received.fetch_add(1, Ordering::Relaxed);
    }

    /// How long nothing arrived (since the transport was built, if nothing ever did): no RTP,
    /// or with `or_rtcp`, neither RTP nor RTCP.
    pub(super) fn silent_for(&self, or_rtcp: bool) -> Duration {
        let mut last = self.last_rtp_ms.load(Ordering::Relaxed);
        if or_rtcp {
            last = last.max(self.last_rtcp_ms.load(Ordering::Relaxed));
        }
        Duration::from_millis(self.now_ms().saturating_sub(last.max(1)))
    }

    pub(super) fn rtcp_received(&self) -> u64 {
        self.rtcp_received.load(Ordering::Relaxed)
    }
}

/// The jitter buffers rtpbin made for the peer's streams, held weakly (rtpbin owns them).
type JitterBuffers = Mutex<Vec<glib::WeakRef<gst::Element>>>;

/// One RTP session over the bound sockets, in the codec chain's pipeline. See the module docs.
pub(super) struct RtpTransport {
    rtpbin: gst::Element,
    pipeline: glib::WeakRef<gst::Pipeline>,
    send_pad: gst::Pad,
    local_rtp: SocketAddr,
    rtcp_mux: bool,
    srtp: bool,
    /// SDES profile, or the DTLS state; neither: plain RTP.
    sdes: Option<SrtpProfile>,
    dtls: Option<Arc<DtlsState>>,
    /// The udpsrc elements, whose sockets close() closes (the udpsinks share them); the last
    /// one reads the socket RTCP leaves from.
    udp_srcs: Vec<gst::Element>,
    /// The udpsinks for RTP and RTCP and where each sends now.
    sinks: [(gst::Element, Mutex<SocketAddr>); 2],
    jitterbuffers: Arc<JitterBuffers>,
    activity: Arc<Activity>,
}

impl RtpTransport {
    /// Builds the transport into `pipeline` (not yet playing).
    pub(super) fn new(pipeline: &gst::Pipeline, p: TransportParams<'_>) -> Result<RtpTransport, MediaError> {
        let pt_caps = payload_caps(&p.recv_formats)?;
        let main_format = p.recv_formats[0].clone();
        let local_rtp = p.sockets.local_rtp();
        let remote_rtcp = p.remote_rtcp.unwrap_or_else(|| default_rtcp(p.remote_rtp, p.rtcp_mux));
        if let Some(d) = p.dscp {
            p.sockets.set_dscp(d);
        }
        let rtp_sock = gio_socket(p.sockets.rtp.try_clone().map_err(MediaError::pipeline)?)?;
        let rtcp_sock = if p.rtcp_mux {
            rtp_sock.clone()
        } else {
            gio_socket(p.sockets.rtcp.try_clone().map_err(MediaError::pipeline)?)?
        };
        let activity = Arc::new(Activity::new());
        let add = |els: &[&gst::Element]| pipeline.add_many(els.iter().copied()).map_err(MediaError::pipeline);

        // ---- rtpbin: one RTP session (0) with RTCP ----
        let rtpbin = rtpbin(p.jitter_buffer, p.cname)?;
        if p.report_lost {
            rtpbin.set_property("do-lost", true);
        }
        if p.avpf {
            rtpbin.set_property_from_str("rtp-profile", "avpf");
        }
        match p.rtx {
            Some(r) => enable_rtx(&rtpbin, r),
            None => rtpbin.set_property("do-retransmission", false),
        }
        let jitterbuffers = Arc::new(Mutex::new(Vec::new()));
        watch_jitterbuffers(&rtpbin, &jitterbuffers, p.rtx.is_some());
        if let Some(srtp) = p.srtp {
            use_srtp(&rtpbin, srtp)?;
        }
        {
            let other = p.recv_other_payloads.then(|| main_format.clone());
            rtpbin.connect("request-pt-map", false, move |args| {
                let pt = args.get(2).and_then(|v| v.get::<u32>().ok());
                let caps =
                    pt_caps.iter().find(|(p, _)| Some(*p) == pt).map(|(_, c)| c.clone()).or_else(|| other.clone());
                Some(caps.to_value())
            });
        }
        add(&[&rtpbin])?;

        // ---- send path ----
        let send_pad = request_pad(&rtpbin, "send_rtp_sink_0")?;
        let rtp_sink = udp_sink(&rtp_sock, p.remote_rtp)?;
        let rtcp_sink = udp_sink(&rtcp_sock, remote_rtcp)?;
        add(&[&rtp_sink, &rtcp_sink])?;
        let rtp_out = static_pad(&rtpbin, "send_rtp_src_0")?;
        let rtcp_out = request_pad(&rtpbin, "send_rtcp_src_0")?;
        let dtls_state = p.dtls.map(|d| DtlsState::new(if p.rtcp_mux { 1 } else { 2 }, d.remote_fingerprint));
        // DTLS-SRTP: one dtlssrtpenc/dec pair per socket; (enc, dec) for RTP, then RTCP's.
        let mut dtls_pairs = Vec::new();
        if let (Some(d), Some(state)) = (p.dtls, &dtls_state) {
            let rtp_pair = dtls_pair(d, state)?;
            add(&[&rtp_pair.0, &rtp_pair.1])?;
            link_pads(&rtp_out, &gated_request_pad(&rtp_pair.0, "rtp_sink_0", state)?)?;
            link_pads(&static_pad(&rtp_pair.0, "src")?, &static_pad(&rtp_sink, "sink")?)?;
            if p.rtcp_mux {
                link_pads(&rtcp_out, &gated_request_pad(&rtp_pair.0, "rtcp_sink_0", state)?)?;
            } else {
                let rtcp_pair = dtls_pair(d, state)?;
                add(&[&rtcp_pair.0, &rtcp_pair.1])?;
                link_pads(&rtcp_out, &gated_request_pad(&rtcp_pair.0, "rtcp_sink_0", state)?)?;
                link_pads(&static_pad(&rtcp_pair.0, "src")?, &static_pad(&rtcp_sink, "sink")?)?;
                dtls_pairs.push(rtcp_pair);
            }
            dtls_pairs.insert(0, rtp_pair);
        } else {
            link_pads(&rtp_out, &static_pad(&rtp_sink, "sink")?)?;
            link_pads(&rtcp_out, &static_pad(&rtcp_sink, "sink")?)?;
        }
        // On rtpbin's own send pads, not the sockets': with DTLS-SRTP, dtlssrtpenc's funnel holds
        // the EOS back (its DTLS input never ends), and the BYE leaves encrypted, on the RTP
        // socket with rtcp-mux. Nothing queues between these pads and the sockets, so a packet
        // seen here is being sent, and stopping the pipeline waits for that push to finish.
        {
            let act = activity.clone();
            rtp_out.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(ev)) = &info.data
                    && ev.type_() == gst::EventType::Eos
                {
                    act.send_eos.store(true, Ordering::Relaxed);
                }
                gst::PadProbeReturn::Ok
            });
            let act = activity.clone();
            rtcp_out.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buf) = info.buffer()
                    && let Ok(map) = buf.map_readable()
                    && rtcp_has_bye(&map)
                {
                    act.bye_sent.store(true, Ordering::Relaxed);
                }
                gst::PadProbeReturn::Ok
            });
        }

        // ---- receive path ----
        let (rtp_name, rtcp_name) = match p.srtp {
            Some(_) => ("application/x-srtp", "application/x-srtcp"),
            None => ("application/x-rtp", "application/x-rtcp"),
        };
        // DTLS and SRTP share the socket: dtlssrtpdec sorts them (and types its output itself).
        let rtp_src = if p.dtls.is_some() {
            udp_src(&rtp_sock, &gst::Caps::new_any())?
        } else {
            udp_src(&rtp_sock, &renamed(&main_format, rtp_name))?
        };
        let mut udp_srcs = vec![rtp_src.clone()];
        add(&[&rtp_src])?;
        let rtcp_sink_pad = request_pad(&rtpbin, "recv_rtcp_sink_0")?;
        let rtcp_caps = gst::Caps::new_empty_simple(rtcp_name);
        if let (Some(state), Some((_, rtp_dec))) = (&dtls_state, dtls_pairs.first()) {
            link_pads(&static_pad(&rtp_src, "src")?, &static_pad(rtp_dec, "sink")?)?;
            link_pads(&gated_static_pad(rtp_dec, "rtp_src", state)?, &request_pad(&rtpbin, "recv_rtp_sink_0")?)?;
            if p.rtcp_mux {
                link_pads(&gated_static_pad(rtp_dec, "rtcp_src", state)?, &rtcp_sink_pad)?;
            } else if let Some((_, rtcp_dec)) = dtls_pairs.get(1) {
                let rtcp_src = udp_src(&rtcp_sock, &gst::Caps::new_any())?;
                udp_srcs.push(rtcp_src.clone());
                add(&[&rtcp_src])?;
                link_pads(&static_pad(&rtcp_src, "src")?, &static_pad(rtcp_dec, "sink")?)?;
                link_pads(&gated_static_pad(rtcp_dec, "rtcp_src", state)?, &rtcp_sink_pad)?;
                let act = activity.clone();
                static_pad(&rtcp_src, "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    act.rtcp_arrived();
                    gst::PadProbeReturn::Ok
                });
            }
            let act = activity.clone();
            static_pad(&rtp_src, "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(m) = info.buffer().and_then(|b| b.map_readable().ok()) {
                    if is_rtcp(&m) {
                        act.rtcp_arrived();
                    } else if m.first().is_some_and(|b| b >> 6 == 2) {
                        act.rtp_arrived();
                    }
                }
                gst::PadProbeReturn::Ok
            });
        } else {
            link_pads(&static_pad(&rtp_src, "src")?, &request_pad(&rtpbin, "recv_rtp_sink_0")?)?;
        }
        if dtls_state.is_some() {
            // Linked above.
        } else if p.rtcp_mux && p.srtp.is_some() {
            // srtpdec splits SRTCP from SRTP itself and hands RTCP to the session.
            let act = activity.clone();
            static_pad(&rtp_src, "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if info.buffer().and_then(|b| b.map_readable().ok()).is_some_and(|m| is_rtcp(&m)) {
                    act.rtcp_arrived();
                } else {
                    act.rtp_arrived();
                }
                gst::PadProbeReturn::Ok
            });
        } else if p.rtcp_mux {
            // One socket carries both (RFC 5761): a probe on the receiving socket takes the RTCP
            // packets (packet types 192-223) out of the RTP stream and hands them to an appsrc
            // whose caps say RTCP.
            let rtcp_in = gst_app::AppSrc::builder()
                .caps(&rtcp_caps)
                .format(gst::Format::Time)
                .is_live(true)
                .do_timestamp(true)
                .max_buffers(64)
                .leaky_type(gst_app::AppLeakyType::Downstream)
                .build();
            add(&[rtcp_in.upcast_ref()])?;
            link_pads(&static_pad(rtcp_in.upcast_ref(), "src")?, &rtcp_sink_pad)?;
            let act = activity.clone();
            static_pad(&rtp_src, "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let Some(buf) = info.buffer() else {
                    return gst::PadProbeReturn::Ok;
                };
                if !buf.map_readable().is_ok_and(|m| is_rtcp(&m)) {
                    act.rtp_arrived();
                    return gst::PadProbeReturn::Ok;
                }
                act.rtcp_arrived();
                let _ = rtcp_in.push_buffer(buf.clone());
                gst::PadProbeReturn::Drop
            });
        } else {
            let rtcp_src = udp_src(&rtcp_sock, &rtcp_caps)?;
            udp_srcs.push(rtcp_src.clone());
            add(&[&rtcp_src])?;
            link_pads(&static_pad(&rtcp_src, "src")?, &rtcp_sink_pad)?;
            let act = activity.clone();
            static_pad(&rtp_src, "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                act.rtp_arrived();
                gst::PadProbeReturn::Ok
            });
            let act = activity.clone();
            static_pad(&rtcp_src, "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                act.rtcp_arrived();
                gst::PadProbeReturn::Ok
            });
        }

        let session: glib::Object = rtpbin.emit_by_name("get-internal-session", &[&0u32]);
        // RFC 4585 lets one early feedback packet out per regular RTCP interval: with NACK the
        // regular interval must be short, or most NACKs wait for it and come too late to help.
        let interval = if p.rtx.is_some() { p.rtcp_interval.min(RTX_RTCP_INTERVAL) } else { p.rtcp_interval };
        session.set_property("rtcp-min-interval", interval.as_nanos() as u64);

        // The udpsrc/udpsink elements hold the only references to the sockets from here on; the
        // last one to go (when the pipeline is freed) closes them, or close() does.
        drop((rtp_sock, rtcp_sock));
        Ok(RtpTransport {
            rtpbin,
            pipeline: pipeline.downgrade(),
            send_pad,
            local_rtp,
            rtcp_mux: p.rtcp_mux,
            srtp: p.srtp.is_some() || p.dtls.is_some(),
            sdes: p.srtp.map(|s| s.profile),
            dtls: dtls_state,
            udp_srcs,
            sinks: [(rtp_sink, Mutex::new(p.remote_rtp)), (rtcp_sink, Mutex::new(remote_rtcp))],
            jitterbuffers,
            activity,
        })
    }

    /// The sink pad our RTP goes into: the codec chain's payloaded stream, with its payload
    /// types and SSRC set.
    pub(super) fn send_pad(&self) -> &gst::Pad {
        &self.send_pad
    }

    /// Calls `f` with each stream the peer starts sending (a new SSRC or payload type): the
    /// pipeline, the stream's src pad (RTP, in order, de-jittered) and its payload type. `f`
    /// must link the pad. Set it before the pipeline plays.
    pub(super) fn on_receive(&self, f: impl Fn(&gst::Pipeline, &gst::Pad, u8) + Send + Sync + 'static) {
        let pipeline = self.pipeline.clone();
        self.rtpbin.connect_pad_added(move |_, pad| {
            let name = pad.name();
            let Some(rest) = name.strip_prefix("recv_rtp_src_0_") else {
                return;
            };
            let Some(pt) = rest.rsplit('_').next().and_then(|s| s.parse::<u8>().ok()) else {
                tracing::warn!("rtpbin made a receive pad {name} without a payload type; its stream is not played");
                return;
            };
            if let Some(pipeline) = pipeline.upgrade() {
                f(&pipeline, pad, pt);
            }
        });
    }

    /// Calls `f` with the SSRC of each of the peer's sources that sends an RTCP BYE.
    pub(super) fn on_remote_bye(&self, f: impl Fn(u32) + Send + Sync + 'static) {
        self.rtpbin.connect("on-bye-ssrc", false, move |args| {
            f(args.get(2).and_then(|v| v.get::<u32>().ok()).unwrap_or(0));
            None
        });
    }

    /// rtpbin's internal RTP session (RTPSession): `stats`, and signals such as
    /// `on-feedback-rtcp`. Fetched each time: a plain GObject is not `Send`.
    pub(super) fn rtp_session(&self) -> glib::Object {
        self.rtpbin.emit_by_name("get-internal-session", &[&0u32])
    }

    /// The jitter buffers' latency now.
    pub(super) fn latency(&self) -> Duration {
        Duration::from_millis(u64::from(self.rtpbin.property::<u32>("latency")))
    }

    /// Changes the latency of the jitter buffers, those there are and those made later (a new
    /// SSRC of the peer).
    pub(super) fn set_latency(&self, latency: Duration) {
        self.rtpbin.set_property("latency", latency.as_millis().clamp(1, 10_000) as u32);
    }

    /// The `stats` of the jitter buffers still alive (one per stream of the peer).
    pub(super) fn jitter_stats(&self) -> Vec<gst::Structure> {
        let jbs = self.jitterbuffers.lock().unwrap_or_else(|e| e.into_inner());
        jbs.iter().filter_map(|w| w.upgrade()).map(|jb| jb.property::<gst::Structure>("stats")).collect()
    }

    pub(super) fn rtx_counts(&self) -> RtxCounts {
        let find = |name| self.rtpbin.downcast_ref::<gst::Bin>().and_then(|b| b.by_name(name));
        let mut out = RtxCounts::default();
        if let Some(rx) = find(RTX_RECEIVE) {
            out.received = u64::from(rx.property::<u32>("num-rtx-assoc-packets"));
        }
        if let Some(tx) = find(RTX_SEND) {
            out.requests_received = u64::from(tx.property::<u32>("num-rtx-requests"));
            out.sent = u64::from(tx.property::<u32>("num-rtx-packets"));
        }
        out
    }

    /// What arrived and left on the wire (shareable with a monitoring thread).
    pub(super) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Waits up to `limit` for the send path's EOS to reach the network; whether it did.
    pub(super) fn wait_for_send_eos(&self, limit: Duration) -> bool {
        wait_for(&self.activity.send_eos, limit)
    }

    /// Waits up to `limit` for our RTCP BYE to leave; whether it did.
    pub(super) fn wait_for_bye(&self, limit: Duration) -> bool {
        wait_for(&self.activity.bye_sent, limit)
    }

    /// Send to a new remote address (a re-INVITE moved the far end). `rtcp`: `None` means RTP
    /// port + 1, or the RTP address with rtcp-mux. The new destination is added before the old
    /// one is removed, so no packet is lost in between.
    pub(super) fn set_remote(&self, rtp: SocketAddr, rtcp: Option<SocketAddr>) -> Result<(), MediaError> {
        if rtp.port() == 0 || rtp.is_ipv4() != self.local_rtp.is_ipv4() {
            return Err(MediaError::InvalidParams(format!(
                "remote RTP address {rtp} is unusable from local address {}",
                self.local_rtp
            )));
        }
        let rtcp = rtcp.unwrap_or_else(|| default_rtcp(rtp, self.rtcp_mux));
        for ((sink, current), to) in self.sinks.iter().zip([rtp, rtcp]) {
            let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
            if *current == to {
                continue;
            }
            sink.emit_by_name::<()>("add", &[&to.ip().to_string(), &i32::from(to.port())]);
            sink.emit_by_name::<()>("remove", &[&current.ip().to_string(), &i32::from(current.port())]);
            *current = to;
        }
        Ok(())
    }

    /// Sends a ready-made RTCP packet to the peer's RTCP address, beside rtpsession's own
    /// reports (for what rtpsession does not send itself). Plain RTP only: under SRTP the packet
    /// would need the session's SRTCP index, which only srtpenc keeps.
    pub(super) fn send_rtcp(&self, packet: &[u8]) -> Result<(), MediaError> {
        if self.srtp {
            return Err(MediaError::pipeline("an RTCP packet of our own cannot be sent in an SRTP session"));
        }
        let to = *self.sinks[1].1.lock().unwrap_or_else(|e| e.into_inner());
        let socket = self
            .udp_srcs
            .last()
            .and_then(|src| src.property::<Option<gio::Socket>>("socket"))
            .ok_or_else(|| MediaError::pipeline("the RTCP socket is gone"))?;
        socket
            .send_to(Some(&gio::InetSocketAddress::from(to)), packet, None::<&gio::Cancellable>)
            .map(|_| ())
            .map_err(|e| MediaError::Pipeline(format!("cannot send RTCP to {to}: {e}")))
    }

    /// How the stream is protected now. A DTLS handshake not done within
    /// [`DTLS_HANDSHAKE_LIMIT`] counts as failed.
    pub(super) fn protection(&self) -> Protection {
        match (&self.dtls, self.sdes) {
            (Some(d), _) => {
                if d.waiting_for().is_some_and(|t| t > DTLS_HANDSHAKE_LIMIT) {
                    d.fail(format!("no DTLS handshake with the far end within {} s", DTLS_HANDSHAKE_LIMIT.as_secs()));
                }
                d.protection()
            }
            (None, Some(p)) => Protection::Sdes(p),
            (None, None) => Protection::Plain,
        }
    }

    /// Frees the ports now (after the pipeline stopped), even if the session object lives on.
    pub(super) fn close(&self) {
        for src in &self.udp_srcs {
            if let Some(socket) = src.property::<Option<gio::Socket>>("socket")
                && let Err(e) = socket.close()
            {
                tracing::warn!("cannot close an RTP socket: {e}");
            }
        }
    }
}

/// RTCP's address when SDP gives none: RTP's with rtcp-mux, else the next port.
fn default_rtcp(rtp: SocketAddr, rtcp_mux: bool) -> SocketAddr {
    if rtcp_mux { rtp } else { SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1)) }
}

/// Each receive format's payload type with its caps; the first format is the main one.
fn payload_caps(formats: &[gst::Caps]) -> Result<Vec<(u32, gst::Caps)>, MediaError> {
    if formats.is_empty() {
        return Err(MediaError::InvalidParams("an RTP stream needs a format to receive".into()));
    }
    formats
        .iter()
        .map(|caps| {
            let pt = caps.structure(0).and_then(|s| s.get::<i32>("payload").ok());
            match pt.and_then(|pt| u32::try_from(pt).ok()) {
                Some(pt) if pt <= 127 => Ok((pt, caps.clone())),
                _ => Err(MediaError::InvalidParams(format!("receive format {caps} has no payload type"))),
            }
        })
        .collect()
}

/// `caps` under another media type name (RTP caps as SRTP's, the same fields).
fn renamed(caps: &gst::Caps, name: &str) -> gst::Caps {
    let mut caps = caps.copy();
    if let Some(s) = caps.make_mut().structure_mut(0) {
        s.set_name(name);
    }
    caps
}

fn wait_for(flag: &AtomicBool, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while !flag.load(Ordering::Relaxed) {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// `rtpbin` with a jitter buffer of `jitter`, sessions removed with their sources, and our
/// CNAME (RFC 3550 SDES) with the tool name.
fn rtpbin(jitter: Duration, cname: &str) -> Result<gst::Element, MediaError> {
    let rtpbin = make("rtpbin", "RTP session manager")?;
    rtpbin.set_property("latency", jitter.as_millis().clamp(1, 10_000) as u32);
    rtpbin.set_property("autoremove", true);
    rtpbin.set_property(
        "sdes",
        gst::Structure::builder("application/x-rtp-source-sdes").field("cname", cname).field("tool", "huis").build(),
    );
    Ok(rtpbin)
}

/// Keeps the jitter buffers rtpbin makes (for their figures); with retransmission, tunes when
/// they ask for it.
fn watch_jitterbuffers(rtpbin: &gst::Element, jbs: &Arc<JitterBuffers>, rtx: bool) {
    let jbs = jbs.clone();
    rtpbin.connect("new-jitterbuffer", false, move |args| {
        if let Some(jb) = args.get(1).and_then(|v| v.get::<gst::Element>().ok()) {
            if rtx {
                // Ask only for packets that are missing (a gap, or reordered by 3), not for
                // the next one when it seems late: a frame's packets come in bursts 33 ms
                // apart, and guessing the next arrival asks for packets not yet sent.
                jb.set_property("rtx-next-seqnum", false);
                // And ask as soon as the gap is seen: the automatic delay (twice the
                // jitter) spends most of a 50 ms buffer waiting for a reordering that a
                // room's network seldom does.
                jb.set_property("rtx-delay", 0i32);
                jb.set_property("rtx-max-retries", 3i32);
            }
            jbs.lock().unwrap_or_else(|e| e.into_inner()).push(jb.downgrade());
        }
        None
    });
}

/// Sets up retransmission on `rtpbin`: the jitter buffers send NACKs, rtpbin's auxiliary
/// sender and receiver retransmit and repair.
fn enable_rtx(rtpbin: &gst::Element, r: Retransmission) {
    rtpbin.set_property("do-retransmission", true);
    for (signal, factory, name, pt, rtx_pt) in [
        ("request-aux-sender", "rtprtxsend", RTX_SEND, r.send_pt, r.send_rtx_pt),
        ("request-aux-receiver", "rtprtxreceive", RTX_RECEIVE, r.recv_pt, r.recv_rtx_pt),
    ] {
        rtpbin.connect(signal, false, move |args| {
            let session = args.get(1).and_then(|v| v.get::<u32>().ok())?;
            match rtx_aux(factory, name, session, pt, rtx_pt, r) {
                Ok(bin) => Some(bin.to_value()),
                Err(e) => {
                    tracing::error!("retransmission: {e}");
                    None
                }
            }
        });
    }
}

/// rtpbin's auxiliary sender or receiver for session `session`: `rtprtxsend` or
/// `rtprtxreceive` in a bin with the `sink_N`/`src_N` pads rtpbin links.
fn rtx_aux(
    factory: &'static str,
    name: &str,
    session: u32,
    pt: u8,
    rtx_pt: u8,
    r: Retransmission,
) -> Result<gst::Element, MediaError> {
    let bin = gst::Bin::new();
    let rtx = make(factory, "RTP retransmission")?;
    rtx.set_property("name", name);
    rtx.set_property(
        "payload-type-map",
        gst::Structure::builder("application/x-rtp-pt-map").field(pt.to_string(), u32::from(rtx_pt)).build(),
    );
    if factory == "rtprtxsend" {
        rtx.set_property(
            "clock-rate-map",
            gst::Structure::builder("application/x-rtp-pt-map").field(pt.to_string(), r.clock_rate).build(),
        );
        rtx.set_property("max-size-time", r.keep.as_millis().min(u128::from(u32::MAX)) as u32);
        rtx.set_property("max-size-packets", 0u32);
    }
    bin.add(&rtx).map_err(MediaError::pipeline)?;
    for (dir, pad_name) in [("sink", format!("sink_{session}")), ("src", format!("src_{session}"))] {
        let target = static_pad(&rtx, dir)?;
        let ghost = gst::GhostPad::builder_with_target(&target).map_err(MediaError::pipeline)?.name(pad_name).build();
        bin.add_pad(&ghost).map_err(MediaError::pipeline)?;
    }
    Ok(bin.upcast())
}

/// How long a DTLS handshake may take before the stream counts as failed.
pub(super) const DTLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// A dtlssrtpenc/dtlssrtpdec pair sharing one DTLS connection: our certificate on the decoder,
/// our role on the encoder, and the peer's certificate and keys watched on the decoder's
/// inner `dtlsdec`.
fn dtls_pair(d: &DtlsParams, state: &Arc<DtlsState>) -> Result<(gst::Element, gst::Element), MediaError> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = format!("huis-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let dec = make("dtlssrtpdec", "DTLS-SRTP")?;
    if let Some(pem) = &d.pem {
        dec.set_property("pem", pem);
    }
    dec.set_property("connection-id", &id);
    let enc = make("dtlssrtpenc", "DTLS-SRTP")?;
    enc.set_property("connection-id", &id);
    enc.set_property("is-client", d.client);
    let inner = dec
        .downcast_ref::<gst::Bin>()
        .and_then(|b| {
            b.iterate_recurse().into_iter().flatten().find(|e| e.factory().is_some_and(|f| f.name() == "dtlsdec"))
        })
        .ok_or_else(|| MediaError::pipeline("dtlssrtpdec has no dtlsdec inside"))?;
    let st = state.clone();
    inner.connect_notify(Some("peer-pem"), move |el, _| {
        if let Some(pem) = el.property::<Option<String>>("peer-pem") {
            st.peer_certificate(&pem);
        }
    });
    let st = state.clone();
    inner.connect("on-key-received", false, move |args| {
        let profile = args.first().and_then(|v| v.get::<gst::Element>().ok()).and_then(|el| {
            // GstDtlsSrtpAuth: 1 = HMAC-SHA1-32, 2 = HMAC-SHA1-80.
            match el.property::<u32>("srtp-auth") {
                1 => Some(SrtpProfile::AesCm128HmacSha1_32),
                2 => Some(SrtpProfile::AesCm128HmacSha1_80),
                _ => None,
            }
        });
        st.keyed(profile);
        None
    });
    let st = state.clone();
    dec.connect_notify(Some("connection-state"), move |el, _| {
        // GstDtlsConnectionState: 2 = failed.
        let v = el.property_value("connection-state");
        if glib::EnumValue::from_value(&v).is_some_and(|(_, e)| e.nick() == "failed") {
            st.fail("the DTLS handshake with the far end failed".into());
        }
    });
    Ok((enc, dec))
}

/// `el`'s request pad `name`, passing buffers only once DTLS is open (the peer proved its
/// certificate): before, and after a failure, nothing of ours leaves.
fn gated_request_pad(el: &gst::Element, name: &str, state: &Arc<DtlsState>) -> Result<gst::Pad, MediaError> {
    let pad =
        el.request_pad_simple(name).ok_or_else(|| MediaError::Pipeline(format!("{} has no pad {name}", el.name())))?;
    gate(&pad, state);
    Ok(pad)
}

/// `el`'s static pad `name`, gated like [`gated_request_pad`]: nothing of the peer's is played
/// before its certificate matched.
fn gated_static_pad(el: &gst::Element, name: &str, state: &Arc<DtlsState>) -> Result<gst::Pad, MediaError> {
    let pad = static_pad(el, name)?;
    gate(&pad, state);
    Ok(pad)
}

fn gate(pad: &gst::Pad, state: &Arc<DtlsState>) {
    let st = state.clone();
    pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, _| {
        if st.open() { gst::PadProbeReturn::Ok } else { gst::PadProbeReturn::Drop }
    });
}

/// SRTP through rtpbin's encoder/decoder hooks: one srtpenc and one srtpdec serve RTP and RTCP.
fn use_srtp(rtpbin: &gst::Element, srtp: &SrtpParams) -> Result<(), MediaError> {
    let enc = make("srtpenc", "SRTP encryption")?;
    let p = srtp.profile;
    enc.set_property("key", gst::Buffer::from_slice(srtp.send_key.clone()));
    enc.set_property_from_str("rtp-cipher", p.cipher());
    enc.set_property_from_str("rtp-auth", p.rtp_auth());
    enc.set_property_from_str("rtcp-cipher", p.cipher());
    enc.set_property_from_str("rtcp-auth", p.rtcp_auth());
    let dec = make("srtpdec", "SRTP decryption")?;
    let key_caps = gst::Caps::builder("application/x-srtp")
        .field("srtp-key", gst::Buffer::from_slice(srtp.recv_key.clone()))
        .field("srtp-cipher", p.cipher())
        .field("srtp-auth", p.rtp_auth())
        .field("srtcp-cipher", p.cipher())
        .field("srtcp-auth", p.rtcp_auth())
        .build();
    dec.connect("request-key", false, move |_| Some(key_caps.to_value()));
    // rtpbin looks for the encoder's `rtp_src_N` before it requests `rtp_sink_N`, but srtpenc
    // only makes the source pad with the sink pad: request the sink pad here first.
    for (signal, el, sink) in [
        ("request-rtp-encoder", &enc, Some("rtp_sink_0")),
        ("request-rtcp-encoder", &enc, Some("rtcp_sink_0")),
        ("request-rtp-decoder", &dec, None),
        ("request-rtcp-decoder", &dec, None),
    ] {
        let el = el.clone();
        rtpbin.connect(signal, false, move |args| {
            let session = args.get(1).and_then(|v| v.get::<u32>().ok());
            if session != Some(0) {
                return Some(None::<gst::Element>.to_value());
            }
            if let Some(sink) = sink
                && el.static_pad(sink).is_none()
            {
                el.request_pad_simple(sink);
            }
            Some(el.to_value())
        });
    }
    Ok(())
}

/// A GIO socket over a UDP socket we bound (so the port is the one SDP announced).
fn gio_socket(s: std::net::UdpSocket) -> Result<gio::Socket, MediaError> {
    let addr = s.local_addr().map_err(MediaError::pipeline)?;
    gio::Socket::from_fd(OwnedFd::from(s)).map_err(|e| MediaError::Bind { addr, reason: e.to_string() })
}

/// `udpsink` sending from `socket` to `to`, without clock sync or multicast.
fn udp_sink(socket: &gio::Socket, to: SocketAddr) -> Result<gst::Element, MediaError> {
    let sink = make("udpsink", "UDP sender")?;
    sink.set_property(if to.is_ipv4() { "socket" } else { "socket-v6" }, socket);
    sink.set_property("close-socket", false);
    sink.set_property("host", to.ip().to_string());
    sink.set_property("port", i32::from(to.port()));
    sink.set_property("sync", false);
    sink.set_property("async", false);
    sink.set_property("auto-multicast", false);
    Ok(sink)
}

/// `udpsrc` reading `socket`, its packets typed as `caps`.
fn udp_src(socket: &gio::Socket, caps: &gst::Caps) -> Result<gst::Element, MediaError> {
    let src = make("udpsrc", "UDP receiver")?;
    src.set_property("socket", socket);
    src.set_property("close-socket", false);
    src.set_property("caps", caps);
    Ok(src)
}

/// RFC 5761: RTCP packet types 192-223 never collide with RTP payload types 0-95 (with marker).
fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 8 && data[0] >> 6 == 2 && (192..=223).contains(&data[1])
}

/// Whether a compound RTCP packet holds a BYE.
fn rtcp_has_bye(data: &[u8]) -> bool {
    let mut off = 0usize;
    while off + 4 <= data.len() {
        if data[off + 1] == 203 {
            return true;
        }
        off += (usize::from(u16::from_be_bytes([data[off + 2], data[off + 3]])) + 1) * 4;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_classification() {
        // RTP PCMU, marker set: byte 1 = 0x80 → 128, not RTCP.
        assert!(!is_rtcp(&[0x80, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
        // SR (200).
        assert!(is_rtcp(&[0x80, 200, 0, 6, 0, 0, 0, 0]));
        // RR then BYE in one compound packet.
        let compound = [0x80, 201, 0, 1, 1, 2, 3, 4, 0x81, 203, 0, 1, 1, 2, 3, 4];
        assert!(rtcp_has_bye(&compound));
        assert!(!rtcp_has_bye(&compound[..8]));
        assert!(!rtcp_has_bye(&[0x80, 201, 0xff, 0xff]));
    }
}
