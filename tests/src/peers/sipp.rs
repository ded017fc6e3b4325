//! SIPp 3.6 as caller, answering peer or sender of malformed SIP.
//!
//! Every run gets `-nostdin`, a global `-timeout`, `-trace_err` (error file),
//! `-trace_stat` (CSV stats, read back for the counts) and optionally
//! `-trace_msg`, all in a temp dir. Exit status 0 means every call
//! succeeded. Scenarios are SIPp's built-ins (`-sn uac`, `-sn uas`) or XML
//! written by the harness (see [`malformed_scenario`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::baresip::wait_exit;
use super::netns::NetNs;

/// Which scenario SIPp runs.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// A built-in: `uac`, `uas`, `uac_pcap`, `regexp`, `branchc`, ...
    Builtin(String),
    /// XML text; written to `scenario.xml` in the run's temp dir.
    Xml(String),
}

/// Options for a SIPp run.
#[derive(Debug, Clone)]
pub struct SippOpts {
    pub scenario: Scenario,
    /// `ip:port` to send to (the remote host argument); `None` for a UAS.
    pub target: Option<String>,
    /// Local SIP port (`-p`); `None`: one from [`NetNs::port`].
    pub local_port: Option<u16>,
    /// `-m`: stop after this many calls.
    pub calls: u32,
    /// `-r`: calls per second (SIPp's default is 10).
    pub rate: Option<u32>,
    /// `-s`: the R-URI user (`[service]`).
    pub service: Option<String>,
    /// `-timeout`: SIPp gives up after this (exit code != 0).
    pub timeout: Duration,
    /// `-t u1` (UDP, default) or `-t t1` (TCP, one connection).
    pub tcp: bool,
    /// Keep a message trace (`-trace_msg`).
    pub trace_msg: bool,
    pub extra: Vec<String>,
}

impl SippOpts {
    /// The built-in `uac` calling `target` `calls` times.
    pub fn uac(target: &str, calls: u32) -> SippOpts {
        SippOpts {
            scenario: Scenario::Builtin("uac".into()),
            target: Some(target.into()),
            local_port: None,
            calls,
            rate: None,
            service: None,
            timeout: Duration::from_secs(20),
            tcp: false,
            trace_msg: true,
            extra: vec![],
        }
    }

    /// The built-in `uas`, answering `calls` calls then exiting.
    pub fn uas(port: u16, calls: u32) -> SippOpts {
        SippOpts {
            scenario: Scenario::Builtin("uas".into()),
            target: None,
            local_port: Some(port),
            calls,
            rate: None,
            service: None,
            timeout: Duration::from_secs(30),
            tcp: false,
            trace_msg: true,
            extra: vec![],
        }
    }
}

/// How a SIPp run ended.
#[derive(Debug, Clone)]
pub struct SippResult {
    /// Exit code: 0 all calls succeeded, 1 some failed, 97/99 aborted, ...
    /// `None`: killed by the harness (ran past its timeout).
    pub code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub stdout: String,
    pub stderr: String,
    /// Contents of the error trace (`-trace_err`).
    pub errors: String,
    /// Contents of the message trace (`-trace_msg`), if kept.
    pub messages: String,
    pub elapsed: Duration,
}

impl SippResult {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for SippResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sipp exit {:?}, {} ok, {} failed, {:.1} s\n--- errors ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.successful,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.errors,
            self.stderr
        )
    }
}

/// A SIPp process.
pub struct Sipp {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    timeout: Duration,
    started: Instant,
}

impl Sipp {
    /// Starts SIPp in `ns`; returns at once (use for a UAS, then [`Sipp::wait`]).
    pub fn spawn(ns: &NetNs, opts: SippOpts) -> Result<Sipp> {
        let dir = tempfile::Builder::new().prefix("sipp-").tempdir()?;
        let port = opts.local_port.unwrap_or_else(|| ns.port());
        let mut cmd = ns.cmd("sipp");
        match &opts.scenario {
            Scenario::Builtin(name) => {
                cmd.args(["-sn", name]);
            }
            Scenario::Xml(xml) => {
                let p = dir.path().join("scenario.xml");
                std::fs::write(&p, xml)?;
                cmd.arg("-sf").arg(p);
            }
        }
        if let Some(t) = &opts.target {
            cmd.arg(t);
        }
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &opts.calls.to_string()])
            .args(["-t", if opts.tcp { "t1" } else { "u1" }])
            .args(["-timeout", &format!("{}s", opts.timeout.as_secs().max(1))])
            .args(["-timeout_error", "-nostdin", "-trace_err", "-trace_stat", "-fd", "1"])
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .arg("-stf")
            .arg(dir.path().join("stats.csv"));
        if let Some(r) = opts.rate {
            cmd.args(["-r", &r.to_string()]);
        }
        if let Some(s) = &opts.service {
            cmd.args(["-s", s]);
        }
        if opts.trace_msg {
            cmd.arg("-trace_msg").arg("-message_file").arg(dir.path().join("messages.log"));
        }
        cmd.args(&opts.extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log"))?)
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?);
        let child = cmd.spawn().context("start sipp (Debian package sip-tester)")?;
        Ok(Sipp { child: Some(child), dir, port, timeout: opts.timeout, started: Instant::now() })
    }

    /// Starts SIPp and waits for it to finish.
    pub fn run(ns: &NetNs, opts: SippOpts) -> Result<SippResult> {
        let s = Self::spawn(ns, opts)?;
        s.wait()
    }

    /// Waits for the exit (at most its `-timeout` plus 5 s, then kills it).
    pub fn wait(mut self) -> Result<SippResult> {
        let mut child = self.child.take().unwrap();
        let st = wait_exit(&mut child, self.timeout + Duration::from_secs(5));
        let code = match st {
            Some(st) => st.code(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        };
        Ok(self.result(code))
    }

    /// Stops a running SIPp (SIGUSR1 makes SIPp dump and quit; then SIGKILL).
    pub fn stop(mut self) -> Result<SippResult> {
        let Some(mut child) = self.child.take() else { bail!("already stopped") };
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
        let code = match wait_exit(&mut child, Duration::from_secs(3)) {
            Some(st) => st.code(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        };
        Ok(self.result(code))
    }

    fn result(&self, code: Option<i32>) -> SippResult {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        let (successful, failed) = stats_counts(&self.dir.path().join("stats.csv"));
        SippResult {
            code,
            successful,
            failed,
            stdout: read("stdout.log"),
            stderr: read("stderr.log"),
            errors: read("errors.log"),
            messages: read("messages.log"),
            elapsed: self.started.elapsed(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Cumulative `SuccessfulCall(C)` / `FailedCall(C)` from the last line of
/// SIPp's `-trace_stat` CSV (`;`-separated).
fn stats_counts(path: &PathBuf) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (0, 0);
    };
    let Some(last) = lines.last() else {
        return (0, 0);
    };
    let cols: Vec<&str> = header.split(';').collect();
    let vals: Vec<&str> = last.split(';').collect();
    let get = |name: &str| {
        cols.iter().position(|c| *c == name).and_then(|i| vals.get(i)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    (get("SuccessfulCall(C)"), get("FailedCall(C)"))
}

/// A SIPp client scenario that sends malformed requests over UDP (each with
/// its own Call-ID, so answers to them are discarded rather than derailing
/// the scenario), then a normal OPTIONS to `[service]@[remote_ip]:[remote_port]`
/// and requires a `200` within 5 s. Run it with `calls: 1` and
/// `service: Some(user)`; success means the target survived and still
/// answers. The messages: Content-Length larger than the body, missing
/// Via / From / To / Call-ID / CSeq, 500 extra headers, a 20 KB header, a
/// huge and a negative Content-Length, a bad SIP version, a CSeq mismatch.
pub fn malformed_scenario() -> String {
    let std = |method: &str, tag: &str, skip: &str| -> String {
        let mut h = String::new();
        if skip != "Via" {
            h += "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n";
        }
        h += "Max-Forwards: 70\n";
        if skip != "From" {
            h += &format!("From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag{tag}\n");
        }
        if skip != "To" {
            h += "To: <sip:[service]@[remote_ip]:[remote_port]>\n";
        }
        if skip != "Call-ID" {
            h += &format!("Call-ID: {tag}-[call_id]\n");
        }
        if skip != "CSeq" {
            h += &format!("CSeq: 1 {method}\n");
        }
        h += "Contact: <sip:sipp@[local_ip]:[local_port]>\n";
        h
    };
    let sdp = "v=0\no=- 1 1 IN IP4 [local_ip]\ns=-\nc=IN IP4 [local_ip]\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
    let mut msgs: Vec<String> = Vec::new();
    msgs.push(format!(
        "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{}Content-Type: application/sdp\nContent-Length: 900\n\n{}",
        std("INVITE", "trunc", ""),
        &sdp[..40]
    ));
    for skip in ["Via", "From", "To", "Call-ID", "CSeq"] {
        msgs.push(format!(
            "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{}Content-Type: application/sdp\nContent-Length: [len]\n\n{sdp}",
            std("INVITE", &format!("no{skip}"), skip)
        ));
    }
    let many: String = (0..500).map(|i| format!("X-Many-{i}: {i}\n")).collect();
    msgs.push(format!(
        "OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{}{many}Content-Length: 0\n\n",
        std("OPTIONS", "many", "")
    ));
    msgs.push(format!(
        "OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{}X-Long: {}\nContent-Length: 0\n\n",
        std("OPTIONS", "long", ""),
        "x".repeat(20_000)
    ));
    msgs.push(format!(
        "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{}Content-Type: application/sdp\nContent-Length: 99999999999\n\n{sdp}",
        std("INVITE", "hugecl", "")
    ));
    msgs.push(format!(
        "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{}Content-Type: application/sdp\nContent-Length: -5\n\n{sdp}",
        std("INVITE", "negcl", "")
    ));
    msgs.push(format!(
        "OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/7.3\n{}Content-Length: 0\n\n",
        std("OPTIONS", "ver", "")
    ));
    msgs.push(format!(
        "OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{}CSeq: 7 BYE\nContent-Length: 0\n\n",
        std("OPTIONS", "cseq", "CSeq")
    ));
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"huis malformed then OPTIONS\">\n",
    );
    for m in msgs {
        xml += &format!("  <send>\n    <![CDATA[\n{m}\n    ]]>\n  </send>\n  <pause milliseconds=\"50\"/>\n");
    }
    xml += &format!(
        "  <pause milliseconds=\"300\"/>\n  <send retrans=\"200\">\n    <![CDATA[\nOPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{}Accept: application/sdp\nContent-Length: 0\n\n    ]]>\n  </send>\n",
        std("OPTIONS", "final", "Call-ID") + "Call-ID: [call_id]\n"
    );
    xml += "  <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"200\" timeout=\"5000\"/>\n</scenario>\n";
    xml
}

/// The head of a request of SIPp's caller in its call (`to_tag`: inside the dialog).
fn caller_request(method: &str, cseq: u32, to_tag: bool) -> String {
    format!(
        "{method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n\
         Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
         From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]huis[call_number]\n\
         To: <sip:[service]@[remote_ip]:[remote_port]>{}\n\
         Call-ID: [call_id]\n\
         CSeq: {cseq} {method}\n\
         Contact: <sip:sipp@[local_ip]:[local_port]>\n\
         Max-Forwards: 70\n",
        if to_tag { "[peer_tag_param]" } else { "" }
    )
}

/// A SIPp caller scenario: INVITE (PCMU offer), ACK, then one SIP INFO per
/// digit with `application/dtmf-relay` (`Signal=`/`Duration=160`), each
/// answered 200, then BYE. Run with `calls: 1` and `service: Some(user)`.
/// baresip reports INFO digits as `CALL_DTMF_START`, like RFC 4733 ones.
pub fn info_dtmf_scenario(digits: &str) -> String {
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"huis INFO DTMF\">\n");
    xml += &format!(
        "  <send retrans=\"500\"><![CDATA[\n{}Content-Type: application/sdp\nContent-Length: [len]\n\n\
         v=0\no=- 1 1 IN IP[local_ip_type] [local_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\n\
         m=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000\n]]></send>\n\
         \x20 <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"180\" optional=\"true\"/>\n\
         \x20 <recv response=\"200\"/>\n  <send><![CDATA[\n{}Content-Length: 0\n\n]]></send>\n  <pause milliseconds=\"300\"/>\n",
        caller_request("INVITE", 1, false),
        caller_request("ACK", 1, true)
    );
    for (i, d) in digits.chars().enumerate() {
        xml += &format!(
            "  <send retrans=\"500\"><![CDATA[\n{}Content-Type: application/dtmf-relay\nContent-Length: [len]\n\nSignal={d}\nDuration=160\n]]></send>\n  <recv response=\"200\"/>\n  <pause milliseconds=\"200\"/>\n",
            caller_request("INFO", 2 + i as u32, true)
        );
    }
    xml += &format!(
        "  <send retrans=\"500\"><![CDATA[\n{}Content-Length: 0\n\n]]></send>\n  <recv response=\"200\"/>\n</scenario>\n",
        caller_request("BYE", 2 + digits.chars().count() as u32, true)
    );
    xml
}

/// A SIPp caller scenario that changes the session mid-call with re-INVITEs, as a peer whose
/// media moves and that turns its camera on and off: INVITE with PCMU audio at `audio[0]`;
/// after `hold_ms`, a re-INVITE moving audio to `audio[1]` and adding H.264 video at `video`
/// (the 200 must answer video with a port); after `hold_ms` again, a re-INVITE that drops video
/// (port 0; the 200 must answer it with port 0); after `hold_ms`, BYE. SIPp sends no media: the
/// test's own sockets on those ports see what the room sends.
pub fn reinvite_media_scenario(audio: [u16; 2], video: u16, hold_ms: u32) -> String {
    let sdp = |version: u32, audio: u16, video: Option<u16>| -> String {
        let mut s = format!(
            "v=0\no=- 1 {version} IN IP4 [local_ip]\ns=-\nc=IN IP4 [media_ip]\nt=0 0\n\
             m=audio {audio} RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=sendrecv\n"
        );
        if let Some(v) = video {
            s += &format!(
                "m=video {v} RTP/AVP 96\na=rtpmap:96 H264/90000\n\
                 a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\na=sendrecv\n"
            );
        }
        s
    };
    let invite = |cseq: u32, to_tag: bool, body: String, check: Option<&str>| -> String {
        let action = check.map_or(String::new(), |re| {
            format!(
                "<action><ereg regexp=\"{re}\" search_in=\"body\" check_it=\"true\" assign_to=\"m{cseq}\"/></action>"
            )
        });
        format!(
            "  <send retrans=\"500\"><![CDATA[\n{}Content-Type: application/sdp\nContent-Length: [len]\n\n{body}]]></send>\n\
             \x20 <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"180\" optional=\"true\"/>\n\
             \x20 <recv response=\"200\">{action}</recv>\n  <send><![CDATA[\n{}Content-Length: 0\n\n]]></send>\n\
             \x20 <pause milliseconds=\"{hold_ms}\"/>\n",
            caller_request("INVITE", cseq, to_tag),
            caller_request("ACK", cseq, true)
        )
    };
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"huis re-INVITE media\">\n");
    xml += &invite(1, false, sdp(1, audio[0], None), None);
    xml += &invite(2, true, sdp(2, audio[1], Some(video)), Some("m=video [1-9][0-9]* "));
    xml += &invite(3, true, sdp(3, audio[1], Some(0)), Some("m=video 0 "));
    xml += &format!(
        "  <send retrans=\"500\"><![CDATA[\n{}Content-Length: 0\n\n]]></send>\n  <recv response=\"200\"/>\n\
         \x20 <Reference variables=\"m2,m3\"/>\n</scenario>\n",
        caller_request("BYE", 4, true)
    );
    xml
}
