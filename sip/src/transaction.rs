//! RFC 3261 §17 transaction state machines, sans-IO.
//!
//! A transaction holds the encoded request (client) or last response (server), decides when to
//! retransmit, and when it times out or ends. It never builds messages: the UA core gives it the
//! bytes (including the ACK for a non-2xx final response, which belongs to the INVITE client
//! transaction). ACK for 2xx and 2xx retransmission are end-to-end and live in the UA core.
//!
//! Following RFC 6026, INVITE transactions that saw a 2xx stay in an *Accepted* state for
//! 64·T1 instead of ending at once: the client one passes retransmitted 2xx up (so the UA core
//! re-sends the same ACK), the server one absorbs retransmitted INVITEs.

use std::time::{Duration, Instant};

/// Timer base values (RFC 3261 §17.1.1.1 and table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network, 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

impl Timers {
    /// 64·T1: timers B, F, H, J and the 2xx retransmission give-up time.
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

/// Something a transaction asks the UA core to do after a timer fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutput {
    /// Send these bytes again.
    Retransmit(Vec<u8>),
    /// Timer B/F (client) or H (server, no ACK) fired: the transaction failed.
    Timeout,
}

/// Client transaction states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing received (`Trying` for non-INVITE).
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; absorbing retransmissions (timer D / K).
    Completed,
    /// INVITE got a 2xx (RFC 6026); 2xx retransmissions still pass up.
    Accepted,
    /// Done; the UA core removes it.
    Terminated,
}

/// What to do with a response matched to a client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseAction {
    /// Pass it up to the UA core.
    Deliver,
    /// A retransmitted final response: send these bytes (the ACK) again and do nothing else.
    Resend(Vec<u8>),
    /// Ignore it.
    Absorb,
}

/// An INVITE or non-INVITE client transaction (RFC 3261 §17.1).
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ClientState,
    request: Vec<u8>,
    ack: Option<Vec<u8>>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Option<Instant>,
    end_at: Option<Instant>,
}

impl ClientTransaction {
    /// Starts a transaction for `request`, which the caller sends now. `reliable` is true for
    /// TCP (no retransmissions, no waiting in Completed).
    pub fn new(now: Instant, invite: bool, reliable: bool, request: Vec<u8>, timers: Timers) -> Self {
        ClientTransaction {
            invite,
            reliable,
            timers,
            state: ClientState::Calling,
            request,
            ack: None,
            retransmit_at: (!reliable).then(|| now + timers.t1),
            interval: timers.t1,
            timeout_at: Some(now + timers.t64()),
            end_at: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The request bytes as first sent.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Feeds a response with status `code`.
    pub fn on_response(&mut self, now: Instant, code: u16) -> ResponseAction {
        use ClientState::*;
        match (self.state, code) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                if self.invite {
                    // Timer A stops; timer B only guards the Calling state.
                    self.retransmit_at = None;
                    self.timeout_at = None;
                } else if !self.reliable {
                    // Timer E continues at T2 in Proceeding.
                    self.interval = self.timers.t2;
                }
                ResponseAction::Deliver
            }
            (Calling | Proceeding, 200..=299) if self.invite => {
                self.state = Accepted;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.end_at = Some(now + self.timers.t64());
                ResponseAction::Deliver
            }
            (Calling | Proceeding, 200..=699) => {
                self.state = Completed;
                self.retransmit_at = None;
                self.timeout_at = None;
                let wait = match (self.reliable, self.invite) {
                    (true, _) => Duration::ZERO,
                    (false, true) => Duration::from_secs(32).max(self.timers.t64() / 2),
                    (false, false) => self.timers.t4,
                };
                self.end_at = Some(now + wait);
                ResponseAction::Deliver
            }
            (Accepted, 200..=299) => ResponseAction::Deliver,
            (Completed, 300..=699) if self.invite => match &self.ack {
                Some(a) => ResponseAction::Resend(a.clone()),
                None => ResponseAction::Absorb,
            },
            _ => ResponseAction::Absorb,
        }
    }

    /// Stores the ACK the UA core built for a non-2xx final response (and sends now).
    pub fn set_ack(&mut self, ack: Vec<u8>) {
        self.ack = Some(ack);
    }

    /// The next instant at which [`ClientTransaction::on_timer`] has work.
    pub fn deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at].into_iter().flatten().min()
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// Runs due timers.
    pub fn on_timer(&mut self, now: Instant) -> Vec<TxOutput> {
        let mut out = Vec::new();
        if self.timeout_at.is_some_and(|t| now >= t) {
            // Timer B or F.
            self.state = ClientState::Terminated;
            self.timeout_at = None;
            self.retransmit_at = None;
            out.push(TxOutput::Timeout);
            return out;
        }
        if let Some(t) = self.retransmit_at
            && now >= t
        {
            // Timer A (INVITE: doubles without bound) or E (non-INVITE: capped at T2).
            out.push(TxOutput::Retransmit(self.request.clone()));
            self.interval = if self.invite {
                self.interval * 2
            } else if self.state == ClientState::Proceeding {
                self.timers.t2
            } else {
                (self.interval * 2).min(self.timers.t2)
            };
            self.retransmit_at = Some(t + self.interval);
        }
        if self.end_at.is_some_and(|t| now >= t) {
            // Timer D, K or the RFC 6026 Accepted timer.
            self.state = ClientState::Terminated;
            self.end_at = None;
        }
        out
    }
}

/// Server transaction states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Request received (`Trying` / `Proceeding`); provisional responses may have been sent.
    Proceeding,
    /// A final non-2xx response was sent; waiting for ACK (INVITE) or absorbing retransmissions.
    Completed,
    /// ACK received for a non-2xx final response (timer I).
    Confirmed,
    /// A 2xx to INVITE was sent (RFC 6026): retransmitted INVITEs are absorbed.
    Accepted,
    /// Done.
    Terminated,
}

/// An INVITE or non-INVITE server transaction (RFC 3261 §17.2).
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ServerState,
    last_response: Option<Vec<u8>>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Option<Instant>,
    end_at: Option<Instant>,
}

impl ServerTransaction {
    /// A transaction for a request just received.
    pub fn new(invite: bool, reliable: bool, timers: Timers) -> Self {
        ServerTransaction {
            invite,
            reliable,
            timers,
            state: ServerState::Proceeding,
            last_response: None,
            retransmit_at: None,
            interval: timers.t1,
            timeout_at: None,
            end_at: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// True until a final response was sent.
    pub fn is_proceeding(&self) -> bool {
        self.state == ServerState::Proceeding
    }

    /// Records a response with status `code` that the caller sends now.
    /// Returns false (and records nothing) if a final response was already sent.
    pub fn respond(&mut self, now: Instant, code: u16, bytes: Vec<u8>) -> bool {
        if self.state != ServerState::Proceeding {
            return false;
        }
        self.last_response = Some(bytes);
        match code {
            100..=199 => {}
            200..=299 if self.invite => {
                self.state = ServerState::Accepted;
                self.end_at = Some(now + self.timers.t64());
            }
            _ if self.invite => {
                self.state = ServerState::Completed;
                if !self.reliable {
                    self.retransmit_at = Some(now + self.timers.t1); // timer G
                }
                self.timeout_at = Some(now + self.timers.t64()); // timer H
            }
            _ => {
                self.state = ServerState::Completed;
                // Timer J.
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { self.timers.t64() });
            }
        }
        true
    }

    /// A retransmission of the request arrived: the bytes to send again, if any.
    pub fn on_retransmission(&self) -> Option<Vec<u8>> {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => self.last_response.clone(),
            _ => None,
        }
    }

    /// An ACK matched this INVITE transaction (for a non-2xx final response).
    pub fn on_ack(&mut self, now: Instant) {
        if self.invite && self.state == ServerState::Completed {
            self.state = ServerState::Confirmed;
            self.retransmit_at = None;
            self.timeout_at = None;
            // Timer I.
            self.end_at = Some(now + if self.reliable { Duration::ZERO } else { self.timers.t4 });
        }
    }

    /// The next instant at which [`ServerTransaction::on_timer`] has work.
    pub fn deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at].into_iter().flatten().min()
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// Runs due timers.
    pub fn on_timer(&mut self, now: Instant) -> Vec<TxOutput> {
        let mut out = Vec::new();
        if self.timeout_at.is_some_and(|t| now >= t) {
            // Timer H: no ACK came.
            self.state = ServerState::Terminated;
            self.timeout_at = None;
            self.retransmit_at = None;
            out.push(TxOutput::Timeout);
            return out;
        }
        if let Some(t) = self.retransmit_at
            && now >= t
        {
            if let Some(r) = &self.last_response {
                out.push(TxOutput::Retransmit(r.clone()));
            }
            self.interval = (self.interval * 2).min(self.timers.t2);
            self.retransmit_at = Some(t + self.interval);
        }
        if self.end_at.is_some_and(|t| now >= t) {
            self.state = ServerState::Terminated;
            self.end_at = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a transaction's timers to the end, returning (ms offset, output) pairs.
    fn run_client(mut tx: ClientTransaction, start: Instant) -> Vec<(u128, TxOutput)> {
        let mut out = Vec::new();
        while let Some(d) = tx.deadline() {
            for o in tx.on_timer(d) {
                out.push(((d - start).as_millis(), o));
            }
            if tx.is_terminated() {
                break;
            }
        }
        out
    }

    #[test]
    fn timer_a_doubles_and_b_times_out() {
        let t0 = Instant::now();
        let tx = ClientTransaction::new(t0, true, false, b"INVITE".to_vec(), Timers::default());
        let got = run_client(tx, t0);
        let times: Vec<u128> =
            got.iter().filter(|(_, o)| matches!(o, TxOutput::Retransmit(_))).map(|(t, _)| *t).collect();
        // A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B: 32 s.
        assert_eq!(times, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(got.last().unwrap(), &(32000, TxOutput::Timeout));
    }

    #[test]
    fn timer_e_caps_at_t2_and_f_times_out() {
        let t0 = Instant::now();
        let tx = ClientTransaction::new(t0, false, false, b"REGISTER".to_vec(), Timers::default());
        let got = run_client(tx, t0);
        let times: Vec<u128> =
            got.iter().filter(|(_, o)| matches!(o, TxOutput::Retransmit(_))).map(|(t, _)| *t).collect();
        assert_eq!(&times[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
        assert!(times.windows(2).skip(3).all(|w| w[1] - w[0] == 4000));
        assert_eq!(got.last().unwrap(), &(32000, TxOutput::Timeout));
    }

    #[test]
    fn reliable_transport_does_not_retransmit() {
        let t0 = Instant::now();
        let tx = ClientTransaction::new(t0, false, true, b"OPTIONS".to_vec(), Timers::default());
        assert_eq!(run_client(tx, t0), vec![(32000, TxOutput::Timeout)]);
    }

    #[test]
    fn non_invite_proceeding_uses_t2_then_completed_k() {
        let t0 = Instant::now();
        let mut tx = ClientTransaction::new(t0, false, false, b"BYE".to_vec(), Timers::default());
        assert_eq!(tx.on_response(t0, 100), ResponseAction::Deliver);
        let d = tx.deadline().unwrap();
        assert_eq!(tx.on_timer(d).len(), 1);
        assert_eq!(tx.deadline().unwrap() - d, Duration::from_secs(4));
        assert_eq!(tx.on_response(d, 200), ResponseAction::Deliver);
        assert_eq!(tx.on_response(d, 200), ResponseAction::Absorb);
        assert_eq!(tx.deadline().unwrap() - d, Duration::from_secs(5), "timer K = T4");
        tx.on_timer(d + Duration::from_secs(5));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_error_response_resends_ack_and_d_ends() {
        let t0 = Instant::now();
        let mut tx = ClientTransaction::new(t0, true, false, b"INVITE".to_vec(), Timers::default());
        assert_eq!(tx.on_response(t0, 180), ResponseAction::Deliver);
        assert_eq!(tx.deadline(), None, "no timer in Proceeding");
        assert_eq!(tx.on_response(t0, 486), ResponseAction::Deliver);
        tx.set_ack(b"ACK".to_vec());
        assert_eq!(tx.on_response(t0, 486), ResponseAction::Resend(b"ACK".to_vec()));
        assert_eq!(tx.deadline().unwrap() - t0, Duration::from_secs(32), "timer D");
        tx.on_timer(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn server_invite_g_h_and_ack() {
        let t0 = Instant::now();
        let mut tx = ServerTransaction::new(true, false, Timers::default());
        assert!(tx.respond(t0, 100, b"100".to_vec()));
        assert_eq!(tx.on_retransmission(), Some(b"100".to_vec()));
        assert!(tx.respond(t0, 486, b"486".to_vec()));
        assert!(!tx.respond(t0, 200, b"200".to_vec()));
        let mut times = Vec::new();
        let mut timeout = None;
        while let Some(d) = tx.deadline() {
            for o in tx.on_timer(d) {
                match o {
                    TxOutput::Retransmit(_) => times.push((d - t0).as_millis()),
                    TxOutput::Timeout => timeout = Some((d - t0).as_millis()),
                }
            }
            if tx.is_terminated() {
                break;
            }
        }
        assert_eq!(&times[..5], &[500, 1500, 3500, 7500, 11500], "timer G capped at T2");
        assert_eq!(timeout, Some(32000), "timer H");

        let mut tx = ServerTransaction::new(true, false, Timers::default());
        tx.respond(t0, 603, b"603".to_vec());
        tx.on_ack(t0);
        assert_eq!(tx.state(), ServerState::Confirmed);
        assert_eq!(tx.deadline().unwrap() - t0, Duration::from_secs(5), "timer I = T4");
    }

    #[test]
    fn server_non_invite_j() {
        let t0 = Instant::now();
        let mut tx = ServerTransaction::new(false, false, Timers::default());
        tx.respond(t0, 200, b"200".to_vec());
        assert_eq!(tx.on_retransmission(), Some(b"200".to_vec()));
        assert_eq!(tx.deadline().unwrap() - t0, Duration::from_secs(32), "timer J");
        let mut tx = ServerTransaction::new(false, true, Timers::default());
        tx.respond(t0, 200, b"200".to_vec());
        assert_eq!(tx.deadline(), Some(t0), "J is zero on reliable transports");
    }
}
