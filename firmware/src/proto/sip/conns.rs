//! Bounds on the SIP shell's TCP and TLS connections (issue 21, hardening).
//!
//! Every connection, inbound or ours, holds a file descriptor, a reader task and a buffer. A
//! room box has a 1024-fd limit shared with GStreamer, ALSA, D-Bus and the screen, so an
//! unbounded accept loop is a way to take a room off the air from one laptop. The table here
//! decides, without I/O and on the time it is given:
//!
//! - **Per remote IP**: at most [`ConnLimits::per_ip`] inbound connections (16: a PBX or SBC
//!   that opens a connection per call needs a few; no honest peer needs dozens).
//! - **In total**: at most [`ConnLimits::total`] connections, ours included, before an inbound
//!   one is refused (128: well under the fd
//!   limit with the media's sockets, and far above what a room meets, one registrar flow and a
//!   few calls).
//! - Connections **we** open (the registrar's flow, a call's next hop), and those the
//!   registrar's servers open to us ([`ConnTable::trust`]: a proxy may send a call over a new
//!   connection rather than our flow), are never refused for the total: the inbound connection
//!   idle for longest (not the registrar's) is closed to make room.
//! - An inbound connection that has not sent one whole SIP message within
//!   [`ConnLimits::first_message`] is closed (slowloris); the reader does the timing, the table
//!   only counts it.
//!
//! Refusals are logged at most once per [`LOG_EVERY`] with how many were refused since, and
//! counted for the lifetime of the process ([`ConnCounters`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// At most one refusal log line per this period.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The bounds; [`ConnLimits::default`] is what huisd runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub per_ip: usize,
    pub total: usize,
    /// An inbound connection must have sent a whole SIP message within this time.
    pub first_message: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        // 20 s: an honest peer sends its request within milliseconds of connecting (a TLS
        // handshake has its own 10 s bound before that); slow links still fit.
        ConnLimits { per_ip: 16, total: 128, first_message: Duration::from_secs(20) }
    }
}

/// Why an inbound connection was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{ip} already has {open} SIP connections open (limit {limit} per address)")]
    PerIp { ip: IpAddr, open: usize, limit: usize },
    #[error("{open} SIP connections are open (limit {limit} in total)")]
    Total { open: usize, limit: usize },
}

/// What happened to connections since huisd started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCounters {
    pub refused_per_ip: u64,
    pub refused_total: u64,
    /// Inbound connections closed to make room for one of ours.
    pub evicted: u64,
    /// Inbound connections closed for sending no whole message in time.
    pub slow: u64,
}

struct Entry {
    ip: IpAddr,
    inbound: bool,
    last_active: Instant,
    close: Arc<Notify>,
}

/// The open connections and the decisions on new ones.
pub struct ConnTable {
    limits: ConnLimits,
    next: u64,
    conns: HashMap<u64, Entry>,
    /// The registrar's addresses: their connections to us are admitted like ours.
    trusted: HashSet<IpAddr>,
    counters: ConnCounters,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl ConnTable {
    pub fn new(limits: ConnLimits) -> ConnTable {
        ConnTable {
            limits,
            next: 0,
            conns: HashMap::new(),
            trusted: HashSet::new(),
            counters: ConnCounters::default(),
            last_log: None,
            unlogged: 0,
        }
    }

    pub fn counters(&self) -> ConnCounters {
        self.counters
    }

    fn inbound(&self) -> impl Iterator<Item = (&u64, &Entry)> {
        self.conns.iter().filter(|(_, e)| e.inbound)
    }

    /// Inbound connections open from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.inbound().filter(|(_, e)| e.ip == ip).count()
    }

    /// A peer connected to us: its id and the signal that closes it, or why not.
    pub fn admit_inbound(&mut self, ip: IpAddr, now: Instant) -> Result<(u64, Arc<Notify>), Refusal> {
        let from_ip = self.open_from(ip);
        if from_ip >= self.limits.per_ip {
            self.counters.refused_per_ip += 1;
            return Err(Refusal::PerIp { ip, open: from_ip, limit: self.limits.per_ip });
        }
        // The total counts ours too: it bounds the descriptors.
        let open = self.conns.len();
        if open >= self.limits.total {
            if self.trusted.contains(&ip) {
                self.evict_idle();
            } else {
                self.counters.refused_total += 1;
                return Err(Refusal::Total { open, limit: self.limits.total });
            }
        }
        Ok(self.insert(ip, true, now))
    }

    /// Connections from `ip` (a registrar's server) are taken even at the total.
    pub fn trust(&mut self, ip: IpAddr) {
        self.trusted.insert(ip);
    }

    /// Closes the inbound connection idle for longest that is not the registrar's.
    fn evict_idle(&mut self) -> Option<u64> {
        let (&id, _) = self
            .inbound()
            .filter(|(_, e)| !self.trusted.contains(&e.ip))
            .min_by_key(|(id, e)| (e.last_active, **id))?;
        let e = self.conns.remove(&id).expect("just found");
        e.close.notify_one();
        self.counters.evicted += 1;
        Some(id)
    }

    /// We open a connection: never refused. At the total, the inbound connection idle for
    /// longest is told to close; its id is returned beside ours.
    pub fn admit_outbound(&mut self, ip: IpAddr, now: Instant) -> ((u64, Arc<Notify>), Option<u64>) {
        let evicted = if self.conns.len() >= self.limits.total { self.evict_idle() } else { None };
        (self.insert(ip, false, now), evicted)
    }

    fn insert(&mut self, ip: IpAddr, inbound: bool, now: Instant) -> (u64, Arc<Notify>) {
        self.next += 1;
        let close = Arc::new(Notify::new());
        self.conns.insert(self.next, Entry { ip, inbound, last_active: now, close: close.clone() });
        (self.next, close)
    }

    /// Bytes arrived on connection `id`.
    pub fn touch(&mut self, id: u64, now: Instant) {
        if let Some(e) = self.conns.get_mut(&id) {
            e.last_active = now;
        }
    }

    /// Connection `id` was closed for sending no whole message in time.
    pub fn slow(&mut self, id: u64) {
        self.counters.slow += 1;
        self.remove(id);
    }

    pub fn remove(&mut self, id: u64) {
        self.conns.remove(&id);
    }

    /// Whether to log a refusal now (rate limit): `Some(n)` with the refusals not logged
    /// before this one, `None` to stay quiet (it is counted for the next line).
    pub fn log_refusal(&mut self, now: Instant) -> Option<u64> {
        if self.last_log.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.unlogged += 1;
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// A connection's place in the shared table; dropping it frees the place.
pub struct Tracked {
    table: Arc<Mutex<ConnTable>>,
    pub id: u64,
    pub close: Arc<Notify>,
}

impl Tracked {
    pub fn new(table: Arc<Mutex<ConnTable>>, (id, close): (u64, Arc<Notify>)) -> Tracked {
        Tracked { table, id, close }
    }

    pub fn touch(&self) {
        lock(&self.table).touch(self.id, Instant::now());
    }

    pub fn slow(&self) {
        lock(&self.table).slow(self.id);
    }

    pub fn counters(&self) -> ConnCounters {
        lock(&self.table).counters()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        lock(&self.table).remove(self.id);
    }
}

/// The table's lock; a panic elsewhere while holding it leaves counts that are still usable.
pub fn lock(t: &Mutex<ConnTable>) -> std::sync::MutexGuard<'_, ConnTable> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn per_address_and_total_caps_refuse_and_count() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(ConnLimits { per_ip: 3, total: 5, first_message: Duration::from_secs(1) });
        for _ in 0..3 {
            t.admit_inbound(ip(1), t0).unwrap();
        }
        assert_eq!(
            t.admit_inbound(ip(1), t0).unwrap_err(),
            Refusal::PerIp { ip: ip(1), open: 3, limit: 3 },
            "a fourth connection from one address"
        );
        t.admit_inbound(ip(2), t0).unwrap();
        t.admit_inbound(ip(2), t0).unwrap();
        assert_eq!(t.admit_inbound(ip(3), t0).unwrap_err(), Refusal::Total { open: 5, limit: 5 });
        assert_eq!(t.counters(), ConnCounters { refused_per_ip: 1, refused_total: 1, evicted: 0, slow: 0 });
        assert_eq!(
            t.admit_inbound(ip(1), t0).unwrap_err().to_string(),
            "192.0.2.1 already has 3 SIP connections open (limit 3 per address)"
        );
    }

    #[test]
    fn a_closed_connection_frees_its_place() {
        let t0 = Instant::now();
        let table = Arc::new(Mutex::new(ConnTable::new(ConnLimits {
            per_ip: 1,
            total: 8,
            first_message: Duration::from_secs(1),
        })));
        let first = Tracked::new(table.clone(), lock(&table).admit_inbound(ip(1), t0).unwrap());
        assert!(lock(&table).admit_inbound(ip(1), t0).is_err());
        drop(first);
        let _again = Tracked::new(table.clone(), lock(&table).admit_inbound(ip(1), t0).unwrap());
        assert_eq!(lock(&table).open_from(ip(1)), 1);
    }

    #[test]
    fn our_flow_evicts_the_longest_idle_inbound_connection() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = ConnTable::new(ConnLimits { per_ip: 8, total: 3, first_message: s });
        let (a, close_a) = t.admit_inbound(ip(1), t0).unwrap();
        let (b, close_b) = t.admit_inbound(ip(2), t0 + s).unwrap();
        let (c, _) = t.admit_inbound(ip(3), t0 + 2 * s).unwrap();
        // `a` is the oldest but spoke last: `b` has been idle for longest.
        t.touch(a, t0 + 3 * s);
        let ((ours, _), evicted) = t.admit_outbound(ip(9), t0 + 4 * s);
        assert_eq!(evicted, Some(b));
        assert_eq!(t.counters().evicted, 1);
        // The evicted connection's reader is told (a stored permit: it need not be waiting).
        let waker = futures_waker();
        let mut fut = Box::pin(close_b.notified());
        assert!(fut.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_ready());
        let mut fut = Box::pin(close_a.notified());
        assert!(fut.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_pending());
        // Inbound is still capped; ours never is, even with no inbound left to evict.
        assert_eq!(t.admit_inbound(ip(4), t0 + 5 * s).unwrap_err(), Refusal::Total { open: 3, limit: 3 });
        t.remove(a);
        t.remove(c);
        let (_, none) = t.admit_outbound(ip(9), t0 + 6 * s);
        let (_, none2) = t.admit_outbound(ip(9), t0 + 6 * s);
        let (_, none3) = t.admit_outbound(ip(9), t0 + 6 * s);
        assert_eq!((none, none2, none3), (None, None, None));
        assert_ne!(ours, 0);
        assert_eq!(t.conns.len(), 4, "ours may exceed the total; inbound may not");
    }

    #[test]
    fn the_registrars_connections_are_taken_at_the_total_and_never_evicted() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = ConnTable::new(ConnLimits { per_ip: 8, total: 3, first_message: s });
        t.trust(ip(100));
        let (reg, _) = t.admit_inbound(ip(100), t0).unwrap();
        let (a, close_a) = t.admit_inbound(ip(1), t0 + s).unwrap();
        t.admit_inbound(ip(2), t0 + 2 * s).unwrap();
        assert!(t.admit_inbound(ip(3), t0 + 3 * s).is_err(), "a stranger at the total");
        // The registrar's second connection is taken; the stranger idle longest goes, not the
        // registrar's own older one.
        let (reg2, _) = t.admit_inbound(ip(100), t0 + 4 * s).unwrap();
        assert_ne!(reg, reg2);
        assert!(!t.conns.contains_key(&a));
        let waker = futures_waker();
        assert!(Box::pin(close_a.notified()).as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_ready());
        assert!(t.conns.contains_key(&reg));
        assert_eq!(t.counters().evicted, 1);
    }

    fn futures_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_period_with_the_count_between() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(ConnLimits::default());
        assert_eq!(t.log_refusal(t0), Some(0));
        for i in 1..=500 {
            assert_eq!(t.log_refusal(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.log_refusal(t0 + LOG_EVERY), Some(500));
        assert_eq!(t.log_refusal(t0 + LOG_EVERY + Duration::from_secs(1)), None);
    }

    use std::future::Future;
}
