use std::net::{SocketAddr, UdpSocket};
use std::ops::RangeInclusive;

use super::MediaError;

/// The local RTP socket and the RTCP socket on the next port, bound before SDP is written.
///
/// The same sockets receive (udpsrc) and send (udpsink), so the remote sees our packets come from
/// the port it sends to (symmetric RTP, which NATs and session border controllers expect).
#[derive(Debug)]
pub struct RtpSockets {
    pub(crate) rtp: UdpSocket,
    pub(crate) rtcp: UdpSocket,
}

impl RtpSockets {
    /// Bind RTP on `addr` and RTCP on `addr`'s port + 1. Port 0 lets the OS pick an even RTP
    /// port whose successor is free too.
    pub fn bind(addr: SocketAddr) -> Result<Self, MediaError> {
        if addr.port() != 0 {
            return Self::bind_pair(addr);
        }
        let mut last = None;
        for _ in 0..64 {
            let rtp = UdpSocket::bind(addr).map_err(|e| bind_err(addr, e))?;
            let local = rtp.local_addr().map_err(|e| bind_err(addr, e))?;
            if local.port() % 2 != 0 || local.port() == u16::MAX {
                continue;
            }
            let rtcp_addr = SocketAddr::new(addr.ip(), local.port() + 1);
            match UdpSocket::bind(rtcp_addr) {
                Ok(rtcp) => return Ok(RtpSockets { rtp, rtcp }),
                Err(e) => last = Some(bind_err(rtcp_addr, e)),
            }
        }
        Err(last.unwrap_or_else(|| MediaError::Bind {
            addr,
            reason: "the OS offered no even port with a free successor".into(),
        }))
    }

    /// Bind the first free even port pair in `ports` (a configured RTP port range) on `ip`.
    pub fn bind_in_range(ip: std::net::IpAddr, ports: RangeInclusive<u16>) -> Result<Self, MediaError> {
        let start = *ports.start() + (*ports.start() % 2);
        let mut last = None;
        for port in (start..*ports.end()).step_by(2) {
            match Self::bind_pair(SocketAddr::new(ip, port)) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| MediaError::Bind {
            addr: SocketAddr::new(ip, *ports.start()),
            reason: "the port range holds no even/odd pair".into(),
        }))
    }

    fn bind_pair(addr: SocketAddr) -> Result<Self, MediaError> {
        let rtp = UdpSocket::bind(addr).map_err(|e| bind_err(addr, e))?;
        let rtcp_addr = SocketAddr::new(
            addr.ip(),
            addr.port()
                .checked_add(1)
                .ok_or_else(|| MediaError::Bind { addr, reason: "RTCP would need port 65536".into() })?,
        );
        let rtcp = UdpSocket::bind(rtcp_addr).map_err(|e| bind_err(rtcp_addr, e))?;
        Ok(RtpSockets { rtp, rtcp })
    }

    /// The bound RTP address (the port for `m=audio`).
    pub fn local_rtp(&self) -> SocketAddr {
        self.rtp.local_addr().expect("a bound UDP socket has a local address")
    }

    /// The bound RTCP address (for `a=rtcp` when it is not port + 1, which it always is here).
    pub fn local_rtcp(&self) -> SocketAddr {
        self.rtcp.local_addr().expect("a bound UDP socket has a local address")
    }

    /// Mark outgoing packets with a DSCP code point (46 = EF for voice). Best effort.
    pub(crate) fn set_dscp(&self, dscp: u8) {
        for s in [&self.rtp, &self.rtcp] {
            let sock = socket2::SockRef::from(s);
            let tos = u32::from(dscp) << 2;
            let r = if self.local_rtp().is_ipv4() { sock.set_tos_v4(tos) } else { sock.set_tclass_v6(tos) };
            if let Err(e) = r {
                tracing::warn!("cannot set DSCP {dscp} on the RTP socket: {e}; packets go unmarked");
            }
        }
    }
}

fn bind_err(addr: SocketAddr, e: std::io::Error) -> MediaError {
    MediaError::Bind { addr, reason: e.to_string() }
}
