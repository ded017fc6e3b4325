//! An impaired link between two network namespaces: delay, jitter (which reorders) and random
//! loss, in both directions, on every IP packet that crosses it.
//!
//! The kernel of the test machines has neither netem nor `nft queue` (CONFIG_NFT_QUEUE off), so
//! the link is made in userspace, as a wire would be: one TUN device in each namespace
//! (`hf0`, point to point, [`A_ADDR`] in the first and [`B_ADDR`] in the second), and two
//! threads of the test, one per direction, that read IP packets from one TUN fd and write them
//! to the other, each after its own delay (`delay` plus a random share of `jitter`), or never
//! (a random `loss` share). A TUN fd opened in a namespace (through [`NetNs::enter`]) stays
//! bound to the device there, so the threads need no namespace of their own.
//!
//! Why TUN rather than a UDP relay with nftables DNAT: the packets keep their addresses and
//! ports, so SIP, SDP and RTCP say what they would on a real network and nothing needs
//! rewriting; the programs at both ends are unchanged and unaware; and SIP, RTP, RTCP and TCP
//! all cross the same impaired link, as they would a bad uplink. Each packet gets its own
//! random delay, so with a jitter larger than the packet spacing later packets overtake earlier
//! ones, as real jitter does (counted in [`DirStats::reordered`]).
//!
//! The threads run at the lowest real-time priority when they may (the tests run as root):
//! otherwise a loaded machine wakes them late and the link delays more than it was asked to.
//!
//! Faults that need no delay (a cut link, a share of drops on one port) are simpler with
//! nftables in the namespaces (`super::netfault::Nft`), which work on this link too: a rule in
//! a namespace's output hook sees the packets before they reach the TUN device.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::netns::NetNs;

/// The TUN device's name in each namespace.
pub const TUN_IFACE: &str = "hf0";
/// The first namespace's address on the link.
pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 1);
/// The second namespace's address on the link.
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 2);

/// What the link does to each packet, the same in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    /// Share of packets dropped at random, 0.0 to 1.0.
    pub loss: f64,
    /// Delay every packet gets.
    pub delay: Duration,
    /// Extra delay per packet, uniformly random between 0 and this.
    pub jitter: Duration,
}

impl Impairment {
    /// A clean link: nothing lost, nothing delayed.
    pub fn none() -> Impairment {
        Impairment::default()
    }
}

/// Counters of one direction, read with [`ImpairedLink::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DirStats {
    /// Packets read from the sending namespace.
    pub packets: u64,
    /// Packets dropped on purpose (loss).
    pub dropped: u64,
    /// Packets written out after one that was read after them.
    pub reordered: u64,
    /// Packets written to the receiving namespace, and the time they spent on the link in all
    /// (ms): the mean over a stretch is the difference of two snapshots' `delay_ms_total` over
    /// that of their `delivered`.
    pub delivered: u64,
    pub delay_ms_total: f64,
    /// Mean and largest time a delivered packet spent on the link, in ms, since it was made.
    pub mean_delay_ms: f64,
    pub max_delay_ms: f64,
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    reordered: AtomicU64,
    delay_us_sum: AtomicU64,
    delay_us_max: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DirStats {
        let delivered = self.delivered.load(Ordering::Relaxed);
        let sum = self.delay_us_sum.load(Ordering::Relaxed);
        DirStats {
            packets: self.packets.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
            delivered,
            delay_ms_total: sum as f64 / 1000.0,
            mean_delay_ms: if delivered == 0 { 0.0 } else { sum as f64 / delivered as f64 / 1000.0 },
            max_delay_ms: self.delay_us_max.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

struct Shared {
    stop: AtomicBool,
    impairment: Mutex<Impairment>,
    /// `[A → B, B → A]`.
    dirs: [Counters; 2],
}

/// Two namespaces joined by an impaired link; the devices go away with it.
pub struct ImpairedLink {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    _ns: (NetNs, NetNs),
}

impl ImpairedLink {
    /// Creates `hf0` in `a` ([`A_ADDR`]) and in `b` ([`B_ADDR`]), up and routed to each other,
    /// and starts copying packets between them with `impairment`.
    pub fn new(a: &NetNs, b: &NetNs, impairment: Impairment) -> Result<ImpairedLink> {
        if !a.is_isolated() || !b.is_isolated() {
            bail!("an impaired link needs two private network namespaces (run the tests as root)");
        }
        let tun_a = Arc::new(open_tun_in(a)?);
        let tun_b = Arc::new(open_tun_in(b)?);
        configure(a, A_ADDR, B_ADDR)?;
        configure(b, B_ADDR, A_ADDR)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            impairment: Mutex::new(impairment),
            dirs: [Counters::default(), Counters::default()],
        });
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        let mut threads = Vec::new();
        for (dir, from, to) in [(0usize, &tun_a, &tun_b), (1, &tun_b, &tun_a)] {
            let (from, to, shared) = (from.clone(), to.clone(), shared.clone());
            let rng = Rng::new(seed ^ (dir as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("impair-{}", if dir == 0 { "ab" } else { "ba" }))
                    .spawn(move || forward(&from, &to, &shared, dir, rng))
                    .context("start a link thread")?,
            );
        }
        Ok(ImpairedLink { shared, threads, _ns: (a.clone(), b.clone()) })
    }

    /// Changes what the link does from now on (packets already on it keep their delay).
    pub fn set(&self, impairment: Impairment) {
        *self.shared.impairment.lock().unwrap_or_else(|e| e.into_inner()) = impairment;
    }

    pub fn impairment(&self) -> Impairment {
        *self.shared.impairment.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counters so far: `(A → B, B → A)`.
    pub fn stats(&self) -> (DirStats, DirStats) {
        (self.shared.dirs[0].snapshot(), self.shared.dirs[1].snapshot())
    }
}

impl Drop for ImpairedLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Opens a TUN device [`TUN_IFACE`] inside `ns` (IP packets, no packet-info header).
fn open_tun_in(ns: &NetNs) -> Result<File> {
    ns.enter(|| -> Result<File> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .context("open /dev/net/tun (kernel module tun)")?;
        // struct ifreq: the name (16 bytes), then a union whose first member is the flags.
        let mut ifr = [0u8; 40];
        ifr[..TUN_IFACE.len()].copy_from_slice(TUN_IFACE.as_bytes());
        ifr[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
        // SAFETY: `ifr` is a buffer as large as struct ifreq and outlives the call.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) };
        if rc != 0 {
            bail!("TUNSETIFF {TUN_IFACE}: {}", std::io::Error::last_os_error());
        }
        Ok(f)
    })?
}

/// Gives `hf0` in `ns` the address `ours`, a route to `peer` through it, and brings it up.
fn configure(ns: &NetNs, ours: Ipv4Addr, peer: Ipv4Addr) -> Result<()> {
    let (ours, peer) = (format!("{ours}/32"), peer.to_string());
    let steps: [&[&str]; 2] =
        [&["addr", "add", &ours, "peer", &peer, "dev", TUN_IFACE], &["link", "set", TUN_IFACE, "up"]];
    for args in steps {
        let out = ns.cmd("ip").args(args).output().context("run ip (Debian package iproute2)")?;
        if !out.status.success() {
            bail!("`ip {}` in the namespace failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
    }
    // No IPv6 on the link: router solicitations and the like would only add noise.
    let _ = ns.cmd("sysctl").args(["-qw", &format!("net.ipv6.conf.{TUN_IFACE}.disable_ipv6=1")]).status();
    Ok(())
}

/// A packet on the link, due at `due`; `seq` is the order it was read in.
struct Queued {
    due: Instant,
    seq: u64,
    read_at: Instant,
    data: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    /// Reversed, so the max-heap yields the packet due first.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

/// One direction: reads `from`, queues each packet with its delay (or drops it), writes it to
/// `to` when due. Polls at least every 20 ms for the stop flag.
fn forward(from: &File, to: &File, shared: &Shared, dir: usize, mut rng: Rng) {
    realtime();
    let c = &shared.dirs[dir];
    let mut queue = BinaryHeap::<Queued>::new();
    let mut seq = 0u64;
    let mut last_written: Option<u64> = None;
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = queue.peek().map_or(Duration::from_millis(20), |q| q.due.saturating_duration_since(now));
        let mut pfd = libc::pollfd { fd: from.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // Round up, so a packet is never written before it is due.
        let ms = wait.as_micros().div_ceil(1000).min(20) as libc::c_int;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 && pfd.revents & libc::POLLIN != 0 {
            let mut f = from;
            match f.read(&mut buf) {
                Ok(len) if len > 0 => {
                    let read_at = Instant::now();
                    c.packets.fetch_add(1, Ordering::Relaxed);
                    let imp = *shared.impairment.lock().unwrap_or_else(|e| e.into_inner());
                    if imp.loss > 0.0 && rng.unit() < imp.loss {
                        c.dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let extra = imp.jitter.mul_f64(rng.unit());
                        queue.push(Queued {
                            due: read_at + imp.delay + extra,
                            seq,
                            read_at,
                            data: buf[..len].to_vec(),
                        });
                    }
                    seq += 1;
                }
                _ => {}
            }
        }
        let now = Instant::now();
        while queue.peek().is_some_and(|q| q.due <= now) {
            let Some(q) = queue.pop() else { break };
            let mut t = to;
            // A full queue on the far side drops the packet, as a link would.
            let _ = t.write(&q.data);
            if last_written.is_some_and(|l| q.seq < l) {
                c.reordered.fetch_add(1, Ordering::Relaxed);
            }
            last_written = Some(last_written.map_or(q.seq, |l| l.max(q.seq)));
            let us = now.duration_since(q.read_at).as_micros() as u64;
            c.delivered.fetch_add(1, Ordering::Relaxed);
            c.delay_us_sum.fetch_add(us, Ordering::Relaxed);
            c.delay_us_max.fetch_max(us, Ordering::Relaxed);
        }
    }
}

/// Asks for the lowest real-time priority for the calling thread (root only; kept as is
/// otherwise). On a loaded machine a normal thread woke up to 150 ms late and so delayed
/// packets far beyond the jitter asked for; a real-time one is woken on time, and it spends
/// nearly all of its time blocked in poll(2), so it takes little from the programs under test.
fn realtime() {
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: the calling thread's own handle and a valid sched_param.
    let _ = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &p) };
}

/// xorshift64*: enough randomness for loss and jitter, and no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_numbers_are_uniform_enough() {
        let mut r = Rng::new(42);
        let xs: Vec<f64> = (0..100_000).map(|_| r.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let below = xs.iter().filter(|x| **x < 0.1).count();
        assert!((9_000..11_000).contains(&below), "{below} of 100000 below 0.1");
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn the_queue_yields_the_packet_due_first() {
        let t = Instant::now();
        let mut q = BinaryHeap::new();
        for (ms, seq) in [(30, 0), (10, 1), (20, 2), (10, 3)] {
            q.push(Queued { due: t + Duration::from_millis(ms), seq, read_at: t, data: vec![] });
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.pop().map(|p| p.seq)).collect();
        assert_eq!(order, [1, 3, 2, 0]);
    }
}
