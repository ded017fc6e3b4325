//! Weighted overlap-add filterbank: square-root periodic Hann window of 2·hop samples, hop = one
//! 10 ms frame. Analysis + synthesis add `hop` samples of delay (10 ms at any rate); with the
//! frame buffering that makes the algorithmic latency 20 ms.

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

pub struct Fft {
    pub n: usize,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
    scratch_f: Vec<Complex32>,
    scratch_i: Vec<Complex32>,
}

impl Fft {
    pub fn new(n: usize) -> Self {
        let mut p = RealFftPlanner::<f32>::new();
        let fwd = p.plan_fft_forward(n);
        let inv = p.plan_fft_inverse(n);
        let scratch_f = fwd.make_scratch_vec();
        let scratch_i = inv.make_scratch_vec();
        Self { n, fwd, inv, scratch_f, scratch_i }
    }
    /// Forward transform; `input` (length n) is used as scratch.
    pub fn forward(&mut self, input: &mut [f32], out: &mut [Complex32]) {
        self.fwd.process_with_scratch(input, out, &mut self.scratch_f).expect("fft sizes");
    }
    /// Inverse transform, unnormalised (inverse(forward(x)) = n·x); `spec` is used as scratch.
    pub fn inverse(&mut self, spec: &mut [Complex32], out: &mut [f32]) {
        spec[0].im = 0.0;
        let last = spec.len() - 1;
        spec[last].im = 0.0;
        self.inv.process_with_scratch(spec, out, &mut self.scratch_i).expect("fft sizes");
    }
}

/// Analysis/synthesis pair for one channel.
pub struct Wola {
    pub hop: usize,
    pub n: usize,
    win: Vec<f32>,
    inbuf: Vec<f32>,
    ola: Vec<f32>,
    tmp: Vec<f32>,
}

impl Wola {
    pub fn new(hop: usize) -> Self {
        let n = 2 * hop;
        let win = (0..n)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()).sqrt() as f32)
            .collect();
        Self { hop, n, win, inbuf: vec![0.0; n], ola: vec![0.0; hop], tmp: vec![0.0; n] }
    }

    /// Pushes one hop of input and returns the spectrum of the last 2·hop samples.
    pub fn analyze(&mut self, fft: &mut Fft, hop_in: &[f32], spec: &mut [Complex32]) {
        let h = self.hop;
        self.inbuf.copy_within(h.., 0);
        self.inbuf[h..].copy_from_slice(hop_in);
        for i in 0..self.n {
            self.tmp[i] = self.inbuf[i] * self.win[i];
        }
        fft.forward(&mut self.tmp, spec);
    }

    /// Inverse-transforms `spec` (destroyed) and overlap-adds; writes one hop of output.
    pub fn synthesize(&mut self, fft: &mut Fft, spec: &mut [Complex32], out: &mut [f32]) {
        let h = self.hop;
        fft.inverse(spec, &mut self.tmp);
        let g = 1.0 / self.n as f32;
        for i in 0..h {
            out[i] = self.ola[i] + self.tmp[i] * self.win[i] * g;
            self.ola[i] = self.tmp[i + h] * self.win[i + h] * g;
        }
    }
}
