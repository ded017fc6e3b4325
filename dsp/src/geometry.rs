//! Microphone array geometry.
//!
//! Positions are metres from the array centre, `[x, y, z]`, in capture channel order.
//! Azimuth is in degrees, 0 = +x, counter-clockwise, seen from the array centre.

use crate::DspError;

/// Speed of sound used throughout (m/s, ~20 °C).
pub const SPEED_OF_SOUND: f64 = 343.0;

/// A planar microphone array.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// Mic positions in metres, channel order.
    pub mics: Vec<[f64; 3]>,
    /// For arrays that cannot tell front from back (linear ones): the azimuth the array faces.
    /// Talkers are searched in the half-plane centred on it.
    pub front_azimuth_deg: Option<f64>,
}

impl Geometry {
    /// Builds a geometry and checks it: 2 to 16 mics, finite, distinct, planar (z spread < 1 cm),
    /// aperture between 1 cm and 1 m.
    pub fn new(mics: Vec<[f64; 3]>, front_azimuth_deg: Option<f64>) -> Result<Self, DspError> {
        let n = mics.len();
        if !(2..=16).contains(&n) {
            return Err(DspError::Geometry(format!("{n} microphones; need between 2 and 16")));
        }
        if mics.iter().flatten().any(|v| !v.is_finite()) {
            return Err(DspError::Geometry("a mic position is not a finite number".into()));
        }
        let mut aperture: f64 = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                let d = dist(mics[i], mics[j]);
                if d < 1e-3 {
                    return Err(DspError::Geometry(format!("mics {i} and {j} are at the same place")));
                }
                aperture = aperture.max(d);
            }
        }
        if !(0.01..=1.0).contains(&aperture) {
            return Err(DspError::Geometry(format!(
                "aperture {aperture:.3} m; expected 0.01–1 m (positions are in metres)"
            )));
        }
        let zmin = mics.iter().map(|m| m[2]).fold(f64::INFINITY, f64::min);
        let zmax = mics.iter().map(|m| m[2]).fold(f64::NEG_INFINITY, f64::max);
        if zmax - zmin > 0.01 {
            return Err(DspError::Geometry("mics are not in one horizontal plane".into()));
        }
        if let Some(f) = front_azimuth_deg {
            if !f.is_finite() {
                return Err(DspError::Geometry("front_azimuth_deg is not finite".into()));
            }
        }
        Ok(Self { mics, front_azimuth_deg })
    }

    pub fn n_mics(&self) -> usize {
        self.mics.len()
    }

    /// True when all mics lie on one line (front/back ambiguity).
    pub fn is_linear(&self) -> bool {
        let a = self.mics[0];
        // farthest mic from the first sets the axis
        let b = *self.mics.iter().max_by(|p, q| dist(a, **p).total_cmp(&dist(a, **q))).unwrap();
        let (ux, uy) = (b[0] - a[0], b[1] - a[1]);
        let l = (ux * ux + uy * uy).sqrt();
        self.mics.iter().all(|p| {
            let (vx, vy) = (p[0] - a[0], p[1] - a[1]);
            ((ux * vy - uy * vx) / l).abs() < 2e-3
        })
    }

    /// The azimuth range to search, `(start_deg, span_deg)`: the full circle for planar arrays,
    /// the front half-plane for linear ones (perpendicular to the axis when no front is given).
    pub fn search_range(&self) -> (f64, f64) {
        if self.is_linear() {
            let front = self.front_azimuth_deg.unwrap_or_else(|| {
                let a = self.mics[0];
                let b = self.mics[self.mics.len() - 1];
                (b[1] - a[1]).atan2(b[0] - a[0]).to_degrees() + 90.0
            });
            (front - 90.0, 180.0)
        } else {
            (0.0, 360.0)
        }
    }

    /// Centre of the positions (steering is referenced to it).
    pub fn centroid(&self) -> [f64; 3] {
        let n = self.mics.len() as f64;
        let mut c = [0.0; 3];
        for m in &self.mics {
            for k in 0..3 {
                c[k] += m[k] / n;
            }
        }
        c
    }

    /// Arrival delay (s) at each mic relative to the centroid for a far-field source at `az_deg`,
    /// `el_deg`: negative means the wave reaches that mic first.
    pub fn delays(&self, az_deg: f64, el_deg: f64, out: &mut [f64]) {
        let (az, el) = (az_deg.to_radians(), el_deg.to_radians());
        let u = [az.cos() * el.cos(), az.sin() * el.cos(), el.sin()];
        let c = self.centroid();
        for (o, m) in out.iter_mut().zip(&self.mics) {
            let p = [m[0] - c[0], m[1] - c[1], m[2] - c[2]];
            *o = -(p[0] * u[0] + p[1] * u[1] + p[2] * u[2]) / SPEED_OF_SOUND;
        }
    }

    /// Parses a scene manifest (`array.mic_positions_m`, optional `array.front_azimuth_deg`).
    pub fn from_manifest_json(text: &str) -> Result<Self, DspError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| DspError::Geometry(format!("manifest is not JSON: {e}")))?;
        let arr = v.get("array").ok_or_else(|| DspError::Geometry("manifest has no \"array\" object".into()))?;
        let pos = arr
            .get("mic_positions_m")
            .and_then(|p| p.as_array())
            .ok_or_else(|| DspError::Geometry("manifest has no array.mic_positions_m list".into()))?;
        let mut mics = Vec::with_capacity(pos.len());
        for (i, p) in pos.iter().enumerate() {
            let xs =
                p.as_array().ok_or_else(|| DspError::Geometry(format!("array.mic_positions_m[{i}] is not a list")))?;
            if !(2..=3).contains(&xs.len()) {
                return Err(DspError::Geometry(format!(
                    "array.mic_positions_m[{i}] has {} coordinates; expected 2 or 3",
                    xs.len()
                )));
            }
            let mut m = [0.0; 3];
            for (k, x) in xs.iter().enumerate() {
                m[k] = x
                    .as_f64()
                    .ok_or_else(|| DspError::Geometry(format!("array.mic_positions_m[{i}][{k}] is not a number")))?;
            }
            mics.push(m);
        }
        let front = arr.get("front_azimuth_deg").and_then(|f| f.as_f64());
        Self::new(mics, front)
    }

    /// Known boards' arrays.
    ///
    /// TODO(huis-board): these belong to the board descriptors (`board/boards/*.toml`); take them
    /// from the huis-board crate once it exists instead of this table.
    pub fn for_board(name: &str) -> Option<Self> {
        let g = match name {
            "sim" | "rpi4-respeaker-6mic" | "rpi5-respeaker-6mic" | "resp6" => respeaker6(),
            "pc-x86_64" | "rpi4-respeaker-4mic" | "rpi5-respeaker-4mic" | "resp4" => respeaker4(),
            "rk3588-uma8" | "uma8" => uma8(),
            _ => return None,
        };
        Some(g)
    }

    /// Names accepted by [`Geometry::for_board`].
    pub const BOARD_NAMES: &'static [&'static str] = &[
        "sim",
        "rpi4-respeaker-6mic",
        "rpi5-respeaker-6mic",
        "pc-x86_64",
        "rpi4-respeaker-4mic",
        "rpi5-respeaker-4mic",
        "rk3588-uma8",
    ];
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// ReSpeaker 4-mic, r = 32 mm (order: -x, -y, +x, +y).
pub fn respeaker4() -> Geometry {
    let r = 0.032;
    Geometry::new(vec![[-r, 0.0, 0.0], [0.0, -r, 0.0], [r, 0.0, 0.0], [0.0, r, 0.0]], None).unwrap()
}

/// ReSpeaker 6-mic circular, r = 46.3 mm, starting at 120° and going counter-clockwise.
pub fn respeaker6() -> Geometry {
    let m = [[-0.0232, 0.0401], [-0.0463, 0.0], [-0.0232, -0.0401], [0.0232, -0.0401], [0.0463, 0.0], [0.0232, 0.0401]];
    Geometry::new(m.iter().map(|p| [p[0], p[1], 0.0]).collect(), None).unwrap()
}

/// miniDSP UMA-8: 6 mics on a 43 mm radius circle plus one in the centre (channel 0).
pub fn uma8() -> Geometry {
    let mut mics = vec![[0.0, 0.0, 0.0]];
    mics.extend(circle(6, 0.043, 0.0).mics);
    Geometry::new(mics, None).unwrap()
}

/// `n` mics on a circle of radius `r`, the first at `start_deg`, counter-clockwise.
pub fn circle(n: usize, r: f64, start_deg: f64) -> Geometry {
    let mics = (0..n)
        .map(|i| {
            let a = (start_deg + 360.0 * i as f64 / n as f64).to_radians();
            [r * a.cos(), r * a.sin(), 0.0]
        })
        .collect();
    Geometry::new(mics, None).unwrap()
}

/// A linear bar of `n` mics spaced `spacing` m along x, facing `front_deg`.
pub fn linear(n: usize, spacing: f64, front_deg: f64) -> Geometry {
    let off = (n as f64 - 1.0) * spacing / 2.0;
    let mics = (0..n).map(|i| [i as f64 * spacing - off, 0.0, 0.0]).collect();
    Geometry::new(mics, Some(front_deg)).unwrap()
}
