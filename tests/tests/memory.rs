//! An appliance runs for months: an idle room must not grow. Found against real peers: an idle
//! huisd grew by about 4 MiB a minute (a warning per screen frame queued on a bus nobody read).
//! The hour-long version, idle and in a call, is `bench/memory.sh`.

use std::time::{Duration, Instant};

use huis_tests::{Bus, Huisd};

/// Resident anonymous memory of a process (heap, stacks, GStreamer's buffers), in KiB.
fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("huisd's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/PID/status")
}

#[tokio::test]
async fn an_idle_room_does_not_grow() {
    const WARM_UP: Duration = Duration::from_secs(30);
    const WATCH: Duration = Duration::from_secs(180);
    const ALLOWED_KIB: u64 = 1024;
    const ONE_OFF_KIB: u64 = 2048;

    let bus = Bus::start();
    let mut d = Huisd::start(&bus, None).await;
    let pid = d.child.id();
    tokio::time::sleep(WARM_UP).await;
    let start = Instant::now();
    let mut samples = vec![(0u64, rss_anon_kib(pid))];
    while start.elapsed() < WATCH {
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(d.child.try_wait().unwrap().is_none(), "huisd exited while idle:\n{}", d.log_text());
        samples.push((start.elapsed().as_secs(), rss_anon_kib(pid)));
    }
    let first = samples[0].1;
    let last = samples[samples.len() - 1].1;
    let peak = samples.iter().map(|s| s.1).max().unwrap();
    // A leak grows steadily (the one this test was written for: ~4 MiB a minute). One step of
    // up to ONE_OFF_KIB between two samples, flat before and after, is a one-off allocation
    // (seen: +1.35 MiB once, at a different time in each run, cause not found yet); it is
    // set apart, and everything else must stay within ALLOWED_KIB.
    let step = samples.windows(2).map(|w| w[1].1.saturating_sub(w[0].1)).max().unwrap_or(0);
    let one_off = if step <= ONE_OFF_KIB { step } else { 0 };
    assert!(
        peak.saturating_sub(first).saturating_sub(one_off) <= ALLOWED_KIB
            && last.saturating_sub(first).saturating_sub(one_off) <= ALLOWED_KIB,
        "an idle huisd grew from {first} KiB to {last} KiB (peak {peak} KiB; largest single step {step} KiB) \
         in {} s after a {} s warm-up; RssAnon every 10 s (s, KiB): {samples:?}\nlog:\n{}",
        WATCH.as_secs(),
        WARM_UP.as_secs(),
        d.log_text()
    );
    d.terminate(Duration::from_secs(10));
}
