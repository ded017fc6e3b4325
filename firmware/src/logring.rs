//! The last lines huisd logged, kept in memory for the fleet's `logs` command: a room with no
//! journal (or none readable by huisd) can still show IT what it did. Bounded by lines and by
//! bytes; the oldest go first.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Most lines kept.
pub const MAX_LINES: usize = 2000;
/// Most bytes kept.
pub const MAX_BYTES: usize = 256 * 1024;

struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
}

static RING: Mutex<Ring> = Mutex::new(Ring { lines: VecDeque::new(), bytes: 0 });

/// The layer that feeds the ring; installed beside the journal or stderr.
pub struct LogRing;

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for LogRing {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut line = Line(format!("{}.{:03} {}", now.as_secs(), now.subsec_millis(), event.metadata().level()));
        event.record(&mut line);
        push(line.0);
    }
}

fn push(mut line: String) {
    if line.len() > 4096 {
        let mut end = 4096;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    // Kept for long: hold its length, not the capacity the formatting grew (up to twice as much).
    line.shrink_to_fit();
    let mut r = RING.lock().unwrap_or_else(|e| e.into_inner());
    r.bytes += line.len() + 1;
    r.lines.push_back(line);
    while r.lines.len() > MAX_LINES || r.bytes > MAX_BYTES {
        match r.lines.pop_front() {
            Some(old) => r.bytes -= old.len() + 1,
            None => break,
        }
    }
}

/// The lines kept, oldest first, as text.
pub fn snapshot() -> String {
    let r = RING.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::with_capacity(r.bytes);
    for l in &r.lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_within_its_bounds() {
        for i in 0..(MAX_LINES + 500) {
            push(format!("line {i}"));
        }
        let s = snapshot();
        assert!(s.len() <= MAX_BYTES + MAX_LINES, "{}", s.len());
        assert!(s.ends_with(&format!("line {}\n", MAX_LINES + 499)));
        assert!(!s.contains("line 0\n"));
        push("x".repeat(100_000));
        assert!(snapshot().len() <= MAX_BYTES);
    }
}
