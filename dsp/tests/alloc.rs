//! The frame loop must not allocate: a counting global allocator checks it after warm-up,
//! with every stage on (echo cancellation fed a far end, beam, noise suppression, gain control).

use huis_dsp::roomsim::{self, Rng};
use huis_dsp::{Config, Processor, Stage, geometry};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNT_HERE.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNT_HERE.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn no_allocation_per_frame_after_warm_up() {
    let g = geometry::respeaker6();
    let mut rng = Rng::new(9);
    let n = 16000;
    let s = roomsim::speech_like(n, 16000.0, &mut rng);
    let far = roomsim::speech_like(n, 16000.0, &mut rng);
    let chans = roomsim::plane_wave(&s, &g, 120.0, 0.0, 16000.0);
    let mut mics = vec![0.0f32; n * 6];
    for i in 0..n {
        for c in 0..6 {
            mics[i * 6 + c] = chans[c][i] + 0.3 * far[i] + 0.01 * rng.normal() as f32;
        }
    }
    let mut cfg = Config::new(g);
    cfg.gain_control = true;
    let mut p = Processor::new(&cfg).unwrap();
    let mut out = vec![0.0f32; 160];
    let frames = n / 160;
    for f in 0..frames {
        if f == 20 {
            COUNT_HERE.with(|c| c.set(true));
        }
        if f == 60 {
            p.set_stage(Stage::Beamforming, false);
        }
        if f == 70 {
            p.set_stage(Stage::Beamforming, true);
        }
        let fe: &[f32] = if f % 30 < 20 { &far[f * 160..(f + 1) * 160] } else { &[] };
        p.process(&mics[f * 960..(f + 1) * 960], fe, &mut out);
    }
    COUNT_HERE.with(|c| c.set(false));
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0, "allocations in the frame loop");
}
