//! A minimal blocking UDP driver around the sans-IO core, for trying it against real peers
//! (SIPp, baresip) by hand. Not the firmware shell: one socket, no TCP, no DNS, no media.
//!
//! ```text
//! udp_peer LISTEN answer SECONDS                 # answer every call, print events
//! udp_peer LISTEN call TARGET NEXT_HOP SECONDS   # call TARGET via NEXT_HOP, hang up at the end
//! udp_peer LISTEN register REGISTRAR USER PASSWORD DOMAIN SECONDS
//! ```

use huis_sip::sdp::{Codec, Direction, LocalMedia};
use huis_sip::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: udp_peer LISTEN answer SECONDS | udp_peer LISTEN call TARGET NEXT_HOP SECONDS");
        std::process::exit(2);
    }
    let listen: SocketAddr = args[1].parse().expect("LISTEN is ip:port");
    let sock = UdpSocket::bind(listen).expect("bind");
    let mut cfg = Config::new("huis", "example.invalid", listen);
    cfg.rng_seed = std::process::id() as u64 ^ 0x1234_5678;
    cfg.auto_answer = true;
    let mut ua = UserAgent::new(cfg);
    let media = LocalMedia {
        address: listen.ip(),
        audio_port: 40000,
        codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
        telephone_event: true,
        session_id: 1,
        direction: Direction::SendRecv,
        security: Default::default(),
    };
    let start = Instant::now();
    let (secs, mut call) = match args[2].as_str() {
        "answer" => (args[3].parse().unwrap_or(10), None),
        "call" => {
            let next: SocketAddr = args[4].parse().expect("NEXT_HOP is ip:port");
            let dest = Destination { addr: next, transport: TransportKind::Udp };
            let c = ua.invite(start, &args[3], dest, &media.offer().to_text()).expect("invite");
            (args.get(5).and_then(|s| s.parse().ok()).unwrap_or(10), Some(c))
        }
        "register" => {
            let registrar: SocketAddr = args[3].parse().expect("REGISTRAR is ip:port");
            let (user, pass, domain) = (&args[4], &args[5], &args[6]);
            let mut cfg = ua.config().clone();
            cfg.accounts.push(Account {
                aor: format!("sip:{user}@{domain}"),
                registrar: format!("sip:{domain}"),
                proxy: Destination { addr: registrar, transport: TransportKind::Udp },
                username: user.clone(),
                password: pass.clone(),
                expires: 120,
            });
            cfg.user = user.clone();
            ua = UserAgent::new(cfg);
            ua.register(start, 0).expect("register");
            (args.get(7).and_then(|s| s.parse().ok()).unwrap_or(10), None)
        }
        _ => panic!("mode is answer, call or register"),
    };
    let end = start + Duration::from_secs(secs);
    let mut hung_up = false;
    let mut buf = vec![0u8; 65_536];
    loop {
        while let Some(t) = ua.poll_transmit() {
            let _ = sock.send_to(&t.bytes, t.dest);
        }
        while let Some(e) = ua.poll_event() {
            println!("{:>7.3}s {e:?}", start.elapsed().as_secs_f64());
            match e {
                Event::IncomingCall { call: c, remote_sdp, .. } => {
                    let answer = remote_sdp
                        .and_then(|s| huis_sip::sdp::SessionDescription::parse(&s).ok())
                        .and_then(|o| media.answer(&o).ok())
                        .map(|(a, _)| a.to_text())
                        .unwrap_or_else(|| media.offer().to_text());
                    ua.answer(Instant::now(), c, &answer).expect("answer");
                    call = Some(c);
                }
                Event::CallEnded { call: c, .. } if Some(c) == call => call = None,
                _ => {}
            }
        }
        while let Some(t) = ua.poll_transmit() {
            let _ = sock.send_to(&t.bytes, t.dest);
        }
        let now = Instant::now();
        if now >= end {
            if let (Some(c), false) = (call, hung_up) {
                let _ = ua.hangup(now, c);
                hung_up = true;
                continue;
            }
            if now >= end + Duration::from_secs(2) {
                break;
            }
        }
        let wake = ua.poll_timeout().unwrap_or(now + Duration::from_millis(200)).min(now + Duration::from_millis(200));
        let wait = wake.saturating_duration_since(now).max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait)).expect("timeout");
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => ua.handle_input(Instant::now(), Input::Datagram { from, to: listen, bytes: &buf[..n] }),
            Err(_) => ua.handle_timeout(Instant::now()),
        }
    }
}
