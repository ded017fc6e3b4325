//! The room's policy, driven through its two inputs (people's commands, a backend's call events)
//! and read back from its outputs (the commands it gives the backend, the status feed, the LEDs),
//! on tokio's paused clock. No D-Bus, no network: the test plays the backend's side of the
//! `call` contract.

use std::time::Duration;

use huis_hal::buttons::{Button, Press};
use huis_hal::leds::SimLeds;
use tokio::sync::{mpsc, oneshot};

use super::*;
use huis_hal::content::{ContentSource, SimContent};

use crate::call::{self, CallInfo, CallState, Destination, Direction, EndReason, Protocol};
use crate::status::{AudioStatus, Feed, RoomStatus, StatusEvent, Subscriber, VideoStatus};

const SEC: Duration = Duration::from_secs(1);

struct Harness {
    commands: mpsc::Sender<Command>,
    events: mpsc::Sender<call::Event>,
    /// What the room asks of the backend.
    backend: mpsc::Receiver<call::Command>,
    feed: Subscriber,
    controls: Arc<Controls>,
    heartbeat: call::Heartbeat,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

fn harness(config_text: &str) -> Harness {
    harness_with(config_text, true)
}

fn harness_with(config_text: &str, backend_up: bool) -> Harness {
    harness_full(config_text, backend_up, None)
}

fn harness_full(config_text: &str, backend_up: bool, sim: Option<Arc<SimContent>>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("huis.toml");
    std::fs::write(&config_path, config_text).unwrap();
    let config = Config::parse("test", config_text).unwrap();
    let feed = Feed::new(RoomStatus::default(), AudioStatus::default(), VideoStatus::default());
    let sub = feed.subscribe();
    let controls = Arc::new(Controls::new(&config.audio));
    let (btx, brx) = mpsc::channel(16);
    let heartbeat = call::Heartbeat::default();
    let backend = call::Backend {
        name: "SIP",
        protocol: Protocol::Sip,
        accepts: |d| matches!(d, Destination::Sip { .. } | Destination::Tel { .. }),
        commands: if backend_up { Ok(btx) } else { Err("cannot listen for SIP on UDP 0.0.0.0:5060: in use".into()) },
        address: "sip:room@192.0.2.10:5060".into(),
        heartbeat: Some(heartbeat.clone()),
    };
    let room = Room::new(Parts {
        feed,
        config,
        config_path,
        leds: Box::new(SimLeds::default()),
        sim_buttons: None,
        controls: controls.clone(),
        meters: None,
        screen: None,
        backends: vec![backend],
        ids: CallIds::default(),
        content: sim.clone().map(|s| s as Arc<dyn ContentSource>),
        sim_content: sim,
    });
    let (ctx, crx) = mpsc::channel(16);
    let (etx, erx) = mpsc::channel(16);
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(room.run(crx, erx, async move {
        let _ = stop_rx.await;
    }));
    Harness { commands: ctx, events: etx, backend: brx, feed: sub, controls, heartbeat, _dir: dir, _stop: stop }
}

impl Harness {
    async fn ask(&self, make: impl FnOnce(Reply) -> Command) -> Result<String, RoomError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.unwrap();
        rx.await.unwrap()
    }

    async fn press(&self, button: Button) {
        self.commands.send(Command::Button(Press { button, held: Duration::from_millis(100) })).await.unwrap();
    }

    /// The next thing the room asks of the backend (within a second).
    async fn next_backend_command(&mut self) -> call::Command {
        tokio::time::timeout(SEC, self.backend.recv()).await.expect("the room asked the backend nothing").unwrap()
    }

    async fn event(&self, ev: call::Event) {
        self.events.send(ev).await.unwrap();
    }

    /// Waits until the room's published status satisfies `pred`.
    async fn room_until(&mut self, what: &str, pred: impl Fn(&RoomStatus) -> bool) -> RoomStatus {
        let r = tokio::time::timeout(SEC, self.feed.room.wait_for(|r| pred(r))).await.map(|r| r.map(|r| r.clone()));
        match r {
            Ok(Ok(r)) => r,
            _ => panic!("{what}: not within 1 s; the room shows {:?}", *self.feed.room.borrow()),
        }
    }

    /// Plays the backend accepting a dial: answers the caller, reports the call as started.
    async fn accept_dial(&mut self) -> (CallId, Destination) {
        match self.next_backend_command().await {
            call::Command::Dial { id, to, reply } => {
                reply.send(Ok(())).unwrap();
                let info = CallInfo::new(Protocol::Sip, Direction::Outgoing, to.to_string());
                self.event(call::Event::Started { id, info, answer: false }).await;
                (id, to)
            }
            other => panic!("expected a dial, got {other:?}"),
        }
    }

    async fn set_state(&self, id: CallId, direction: Direction, state: CallState) {
        let mut info = CallInfo::new(Protocol::Sip, direction, "sip:far@192.0.2.20");
        info.state = state;
        info.audio_codec = "opus/48000".into();
        self.event(call::Event::Changed { id, info }).await;
    }

    async fn incoming(&self, id: u32, answer: bool) {
        let info = CallInfo::new(Protocol::Sip, Direction::Incoming, "\"Far\" <sip:far@192.0.2.20>");
        self.event(call::Event::Started { id: CallId(id), info, answer }).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_call_button_dials_then_hangs_up_and_the_leds_follow() {
    let mut h = harness("[call]\ndefault_destination = \"sip:meet@192.0.2.20\"\n");
    h.room_until("idle LEDs", |r| r.leds == "idle").await;
    h.press(Button::Call).await;
    let (id, to) = h.accept_dial().await;
    assert_eq!(to, Destination::parse("sip:meet@192.0.2.20").unwrap());
    h.room_until("dialing", |r| r.state == RoomState::Dialing && r.leds == "connecting").await;
    h.set_state(id, Direction::Outgoing, CallState::Active).await;
    h.room_until("in a call", |r| r.state == RoomState::InCall && r.leds == "in-call").await;
    assert_eq!(h.feed.calls.borrow()[&id].info.audio_codec, "opus/48000", "the call's figures are published");

    h.press(Button::Call).await;
    match h.next_backend_command().await {
        call::Command::Hangup { id: hid, reply } => {
            assert_eq!(hid, id);
            reply.send(Ok(())).unwrap();
        }
        other => panic!("the call button in a call must hang up, not {other:?}"),
    }
    h.event(call::Event::Ended { id, reason: EndReason::LocalHangup }).await;
    let r = h.room_until("idle again", |r| r.state == RoomState::Idle).await;
    assert_eq!(r.last_error, "", "hanging up is not a problem");
    assert_eq!(r.leds, "idle");
    assert_eq!(h.feed.events.recv().await.unwrap(), StatusEvent::CallEnded { reason: "hung up".into() });
    assert!(h.feed.calls.borrow().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_call_button_without_a_destination_says_what_to_set() {
    let mut h = harness("");
    h.press(Button::Call).await;
    let r = h.room_until("an error", |r| !r.last_error.is_empty()).await;
    assert!(r.last_error.contains("call.default_destination"), "{}", r.last_error);
    assert_eq!(r.leds, "error");
    assert!(h.backend.try_recv().is_err(), "nothing was dialled");
}

#[tokio::test(start_paused = true)]
async fn a_ringing_call_is_answered_by_the_button_and_announced() {
    let mut h = harness("");
    h.incoming(7, false).await;
    let r = h.room_until("ringing", |r| r.state == RoomState::Ringing).await;
    assert_eq!(r.leds, "connecting");
    assert_eq!(
        h.feed.events.recv().await.unwrap(),
        StatusEvent::IncomingCall { remote: "\"Far\" <sip:far@192.0.2.20>".into() }
    );
    tokio::time::sleep(5 * SEC).await;
    assert!(h.backend.try_recv().is_err(), "without auto-answer the call rings until someone answers");
    h.press(Button::Call).await;
    assert!(matches!(h.next_backend_command().await, call::Command::Answer { id: CallId(7), .. }));
}

#[tokio::test(start_paused = true)]
async fn auto_answer_answers_at_once_and_so_does_a_caller_that_asks() {
    let mut h = harness("[call]\nauto_answer = true\n");
    h.incoming(3, false).await;
    assert!(matches!(h.next_backend_command().await, call::Command::Answer { id: CallId(3), .. }));

    let mut h = harness("");
    h.incoming(4, true).await;
    assert!(matches!(h.next_backend_command().await, call::Command::Answer { id: CallId(4), .. }));
}

#[tokio::test(start_paused = true)]
async fn a_second_call_while_busy_is_turned_away_and_the_first_goes_on() {
    let mut h = harness("[call]\nauto_answer = true\n");
    h.incoming(1, false).await;
    assert!(matches!(h.next_backend_command().await, call::Command::Answer { .. }));
    h.set_state(CallId(1), Direction::Incoming, CallState::Active).await;
    h.room_until("in a call", |r| r.state == RoomState::InCall).await;
    let _ = h.feed.events.recv().await; // the first call's IncomingCall

    h.incoming(2, false).await;
    match h.next_backend_command().await {
        call::Command::Reject { id, why } => {
            assert_eq!(id, CallId(2));
            assert_eq!(why, call::Rejection::Busy);
        }
        other => panic!("a second call must be refused as busy, not {other:?}"),
    }
    assert_eq!(h.feed.room.borrow().state, RoomState::InCall);
    assert_eq!(h.feed.calls.borrow().len(), 1, "the refused call is not shown");
    assert!(h.feed.events.try_recv().is_err(), "the refused call is not announced");

    // Dialing out while in a call is refused too.
    let e = h.ask(|r| Command::Dial("sip:other@192.0.2.30".into(), r)).await.unwrap_err();
    assert!(matches!(e, RoomError::Call(CallError::Busy)), "{e}");
}

#[tokio::test(start_paused = true)]
async fn mute_reaches_the_audio_the_backends_the_leds_and_the_feed() {
    let mut h = harness("");
    h.ask(|r| Command::SetMuted(true, r)).await.unwrap();
    let r = h.room_until("muted", |r| r.muted).await;
    assert_eq!(r.leds, "muted");
    assert!(h.controls.muted.load(Ordering::Relaxed), "the audio thread sends silence");
    assert!(matches!(h.next_backend_command().await, call::Command::SetMuted(true)));
    h.press(Button::Mute).await;
    let r = h.room_until("unmuted", |r| !r.muted).await;
    assert_eq!(r.leds, "idle");
    assert!(matches!(h.next_backend_command().await, call::Command::SetMuted(false)));
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_sets_last_error_before_call_ended_and_the_next_call_clears_it() {
    let mut h = harness("");
    let reply = {
        let (tx, rx) = oneshot::channel();
        h.commands.send(Command::Dial("sip:busy@192.0.2.40".into(), tx)).await.unwrap();
        rx
    };
    let (id, _) = h.accept_dial().await;
    assert_eq!(reply.await.unwrap().unwrap(), "sip:busy@192.0.2.40");
    h.event(call::Event::Ended { id, reason: EndReason::Busy }).await;
    match h.feed.events.recv().await.unwrap() {
        StatusEvent::CallEnded { reason } => {
            assert_eq!(reason, "call to sip:busy@192.0.2.40 failed: busy");
            // A client reacting to the signal reads the reason already.
            assert_eq!(h.feed.room.borrow().last_error, reason);
        }
        other => panic!("expected CallEnded, got {other:?}"),
    }
    let r = h.room_until("idle with an error", |r| r.state == RoomState::Idle).await;
    assert_eq!(r.leds, "error");

    // Recovery: the next dial clears the error.
    h.commands.send(Command::Dial("sip:meet@192.0.2.20".into(), oneshot::channel().0)).await.unwrap();
    let _ = h.accept_dial().await;
    let r = h.room_until("dialing, error cleared", |r| r.state == RoomState::Dialing).await;
    assert_eq!(r.last_error, "");
    assert_eq!(r.leds, "connecting");
}

#[tokio::test(start_paused = true)]
async fn a_dial_that_never_became_a_call_leaves_the_room_idle_with_the_reason() {
    let mut h = harness("");
    h.commands.send(Command::Dial("sip:nowhere.invalid".into(), oneshot::channel().0)).await.unwrap();
    let id = match h.next_backend_command().await {
        call::Command::Dial { id, reply, .. } => {
            let e = CallError::Unreachable("cannot resolve nowhere.invalid: no such host".into());
            let _ = reply.send(Err(e.clone()));
            h.event(call::Event::DialFailed { id, error: e }).await;
            id
        }
        other => panic!("{other:?}"),
    };
    let r = h.room_until("idle with the reason", |r| r.state == RoomState::Idle && !r.last_error.is_empty()).await;
    assert!(r.last_error.contains("nowhere.invalid"), "{}", r.last_error);
    // Nothing was shown as a call, and a late report about it changes nothing.
    assert!(h.feed.calls.borrow().is_empty());
    h.event(call::Event::Ended { id, reason: EndReason::Timeout }).await;
    tokio::time::sleep(SEC).await;
    assert!(h.feed.events.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_could_not_start_is_named_with_its_reason() {
    let h = harness_with("", false);
    let e = h.ask(|r| Command::Dial("sip:meet@192.0.2.20".into(), r)).await.unwrap_err();
    assert_eq!(e.to_string(), "SIP is not running: cannot listen for SIP on UDP 0.0.0.0:5060: in use");
    // Other requests still work.
    h.ask(|r| Command::SetMuted(true, r)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn requests_that_do_not_fit_are_refused_before_any_backend_sees_them() {
    let mut h = harness("[[destination]]\nname = \"weekly\"\nuri = \"sip:meet@192.0.2.50\"\ndtmf = \"1234#\"\n");
    let e = h.ask(|r| Command::Hangup(r)).await.unwrap_err();
    assert!(matches!(e, RoomError::Call(CallError::NotInCall)), "{e}");
    let e = h.ask(|r| Command::Dial("https://meet.example.org/abc".into(), r)).await.unwrap_err();
    assert_eq!(e.to_string(), "WebRTC destinations are not supported yet");
    let e = h.ask(|r| Command::Dial("weekly2".into(), r)).await.unwrap_err();
    assert!(e.to_string().contains("or the name of a [[destination]]"), "{e}");
    let e = h.ask(|r| Command::PressButton("door".into(), r)).await.unwrap_err();
    assert!(matches!(e, RoomError::InvalidArgument(_)), "{e}");
    assert!(h.backend.try_recv().is_err(), "no backend saw any of these");

    // A named destination goes to the backend with its digits.
    h.commands.send(Command::Dial("weekly".into(), oneshot::channel().0)).await.unwrap();
    let (id, to) = h.accept_dial().await;
    assert_eq!(to, Destination::parse("sip:meet@192.0.2.50").unwrap().with_dtmf("1234#"));
    // DTMF and hold wait for the answer; bad digits never leave.
    let e = h.ask(|r| Command::Call(0, CallOp::Dtmf("12x".into()), r)).await.unwrap_err();
    assert!(matches!(e, RoomError::Call(CallError::InvalidDtmf(_))), "{e}");
    let e = h.ask(|r| Command::Call(id.0, CallOp::Hold(true), r)).await.unwrap_err();
    assert!(matches!(e, RoomError::Call(CallError::NotEstablished)), "{e}");
    let e = h.ask(|r| Command::Call(99, CallOp::Hangup, r)).await.unwrap_err();
    assert!(matches!(e, RoomError::Call(CallError::NoSuchCall(99))), "{e}");
    assert!(h.backend.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_registration_failure_is_shown_and_cleared_when_it_recovers() {
    let mut h = harness("");
    let failed = "registration failed: authentication failed: check account.user and account.password";
    h.event(call::Event::Registration {
        backend: "SIP",
        text: "failed: authentication failed".into(),
        error: Some(failed.into()),
    })
    .await;
    let r = h.room_until("the failure", |r| r.last_error == failed).await;
    assert_eq!(r.registration, "failed: authentication failed");
    assert_eq!(r.leds, "error");
    h.event(call::Event::Registration { backend: "SIP", text: "registered (600 s)".into(), error: None }).await;
    let r = h.room_until("recovered", |r| r.last_error.is_empty()).await;
    assert_eq!(r.registration, "registered (600 s)");
    assert_eq!(r.leds, "idle");
}

#[tokio::test(start_paused = true)]
async fn a_configuration_change_applies_live_and_is_announced() {
    let mut h = harness("[room]\nname = \"Room 4.12\"\n");
    let shown = h.ask(|r| Command::ConfigSet("room.name".into(), "Board room".into(), r)).await.unwrap();
    assert_eq!(shown, "\"Board room\"");
    h.room_until("the new name", |r| r.room_name == "Board room").await;
    assert_eq!(
        h.feed.events.recv().await.unwrap(),
        StatusEvent::ConfigChanged { key: "room.name".into(), value: "\"Board room\"".into() }
    );
    // call.auto_answer is read when a call comes in, not at start-up.
    h.ask(|r| Command::ConfigSet("call.auto_answer".into(), "true".into(), r)).await.unwrap();
    h.incoming(5, false).await;
    assert!(matches!(h.next_backend_command().await, call::Command::Answer { id: CallId(5), .. }));
    let e = h.ask(|r| Command::ConfigSet("room.nmae".into(), "x".into(), r)).await.unwrap_err();
    assert!(matches!(e, RoomError::InvalidArgument(_)), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_stops_beating_is_noticed() {
    let h = harness("");
    h.heartbeat.beat();
    tokio::time::sleep(SEC).await;
    // The heartbeat measures real time (the backend's loop runs on it); the limit is 10 s.
    assert!(h.heartbeat.age() < HEARTBEAT_LIMIT);
    let room_view = Room::new(Parts {
        feed: Feed::new(RoomStatus::default(), AudioStatus::default(), VideoStatus::default()),
        config: Config::default(),
        config_path: "/nonexistent".into(),
        leds: Box::new(SimLeds::default()),
        sim_buttons: None,
        controls: h.controls.clone(),
        meters: None,
        screen: None,
        backends: vec![call::Backend {
            name: "stuck",
            protocol: Protocol::Sip,
            accepts: |_| true,
            commands: Err("test".into()),
            address: String::new(),
            heartbeat: Some(call::Heartbeat::stale_for_tests(HEARTBEAT_LIMIT * 2)),
        }],
        ids: CallIds::default(),
        content: None,
        sim_content: None,
    });
    assert!(!room_view.backends_alive(), "a backend silent for 20 s must stop the watchdog pings");
}

/// The call's info as the backend reports it, with its presentation.
fn with_floor(floor: call::Floor, size: (u32, u32, u32)) -> CallInfo {
    let mut info = CallInfo::new(Protocol::Sip, Direction::Outgoing, "sip:far@192.0.2.20");
    info.state = CallState::Active;
    info.presentation = call::Presentation { floor, width: size.0, height: size.1, framerate: size.2 };
    info
}

#[tokio::test(start_paused = true)]
async fn in_a_call_the_room_asks_for_the_floor_and_follows_it() {
    let sim =
        Arc::new(SimContent::new(huis_hal::content::SimContentConfig { mode: None, ..Default::default() }).unwrap());
    let mut h = harness_full("[call]\ndefault_destination = \"sip:meet@192.0.2.20\"\n", true, Some(sim));
    h.press(Button::Call).await;
    let (id, _) = h.accept_dial().await;
    // Up, but without a presentation channel yet: presenting is refused with the reason.
    h.event(call::Event::Changed { id, info: with_floor(call::Floor::Unavailable, (0, 0, 0)) }).await;
    h.room_until("in a call", |r| r.state == RoomState::InCall).await;
    h.ask(|r| Command::SimulateContentInput(true, r)).await.unwrap();
    let e = h.ask(Command::StartPresentation).await.unwrap_err();
    assert!(e.to_string().contains("no presentation channel"), "{e}");

    // The channel is agreed: the plugged laptop is shared, the backend asked for the floor.
    h.event(call::Event::Changed { id, info: with_floor(call::Floor::Free, (0, 0, 0)) }).await;
    match h.next_backend_command().await {
        call::Command::Present { id: pid, on: true } => assert_eq!(pid, id),
        other => panic!("expected the floor to be asked for, got {other:?}"),
    }
    h.event(call::Event::Changed { id, info: with_floor(call::Floor::Ours, (1920, 1080, 15)) }).await;
    let r = h.room_until("sending", |r| r.presentation == "sending").await;
    assert_eq!((r.presentation_holder.as_str(), r.content_width, r.content_framerate), ("local", 1920, 15));

    // The far end takes over: the room shows theirs and no longer wants to present.
    h.event(call::Event::Changed { id, info: with_floor(call::Floor::Theirs, (1280, 720, 0)) }).await;
    let r = h.room_until("receiving", |r| r.presentation == "receiving").await;
    assert_eq!((r.presentation_holder.as_str(), r.content_width), ("sip:far@192.0.2.20", 1280));
    // Pulling the cable now asks the backend nothing (it yielded already).
    h.ask(|r| Command::SimulateContentInput(false, r)).await.unwrap();
    h.event(call::Event::Changed { id, info: with_floor(call::Floor::Free, (0, 0, 0)) }).await;
    h.room_until("free", |r| r.presentation == "none" && r.presentation_holder.is_empty()).await;
    assert!(h.backend.try_recv().is_err(), "the room asked the backend something after yielding");

    // Plugged in and asked again, then stopped: the backend is told to release.
    h.ask(|r| Command::SimulateContentInput(true, r)).await.unwrap();
    assert!(matches!(h.next_backend_command().await, call::Command::Present { on: true, .. }));
    h.ask(Command::StopPresentation).await.unwrap();
    assert!(matches!(h.next_backend_command().await, call::Command::Present { on: false, .. }));
}
