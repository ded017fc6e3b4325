//! A packet capture inside a test's network namespace, without tcpdump: what went over the
//! wire, for tests that check what was (not) sent in clear and for fuzz seeds taken from real
//! peers' traffic.

use std::time::{Duration, Instant};

use super::NetNs;

/// UDP packets seen on the namespace's loopback: (source port, destination port, payload).
pub type Udp = Vec<(u16, u16, Vec<u8>)>;

/// Captures every UDP/IPv4 packet on the namespace's interfaces for `secs`, with a raw
/// AF_PACKET socket (cooked, so no link header), from inside the namespace. Returns once the
/// socket is open, so the packets sent after the call are all in the capture.
pub fn capture(ns: &NetNs, secs: u64) -> std::thread::JoinHandle<Udp> {
    let ns = ns.clone();
    let (ready, opened) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        ns.enter(move || {
            // SAFETY: plain socket calls on a descriptor this function owns and closes.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, (libc::ETH_P_ALL as u16).to_be() as i32);
                assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
                let _ = ready.send(());
                let tv = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                );
                let mut out = Vec::new();
                let mut buf = vec![0u8; 65536];
                let until = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < until {
                    let n = libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
                    if n <= 0 {
                        continue;
                    }
                    let p = &buf[..n as usize];
                    if p.len() < 28 || p[0] >> 4 != 4 || p[9] != 17 {
                        continue;
                    }
                    let ihl = usize::from(p[0] & 15) * 4;
                    if p.len() < ihl + 8 {
                        continue;
                    }
                    let u = &p[ihl..];
                    let (sport, dport) = (u16::from_be_bytes([u[0], u[1]]), u16::from_be_bytes([u[2], u[3]]));
                    out.push((sport, dport, u[8..].to_vec()));
                }
                libc::close(fd);
                out
            }
        })
        .expect("capture inside the namespace")
    });
    opened.recv_timeout(Duration::from_secs(10)).expect("the capture socket opens within 10 s");
    handle
}
