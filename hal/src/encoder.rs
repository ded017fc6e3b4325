//! H.264 encoder probing through the GStreamer registry.
//!
//! An encoder is usable when its element factory is registered and an
//! instance reaches the READY state (hardware encoders open their device
//! there, so a missing VPU or VA driver shows up as not usable).

use gst::prelude::*;
use gstreamer as gst;

/// Encoders that run on dedicated hardware, whatever their factory says.
const HARDWARE: &[&str] = &[
    "v4l2h264enc",
    "vah264enc",
    "vah264lpenc",
    "vaapih264enc",
    "qsvh264enc",
    "mpph264enc",
    "nvh264enc",
    "nvv4l2h264enc",
    "omxh264enc",
];

/// Software encoders huis knows how to tune for low latency, in order.
pub const SOFTWARE_FALLBACK: &[&str] = &["x264enc", "openh264enc"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderProbe {
    pub element: String,
    pub hardware: bool,
    pub usable: bool,
    /// Why it is not usable (`not installed`, `device did not open`).
    pub reason: Option<String>,
}

/// Probes each encoder named in `preferences` (then the software fallbacks
/// not already named), in order.
pub fn probe(preferences: &[String]) -> crate::Result<Vec<EncoderProbe>> {
    gst::init().map_err(|e| crate::HalError::Gst(e.to_string()))?;
    let mut names: Vec<String> = preferences.to_vec();
    for s in SOFTWARE_FALLBACK {
        if !names.iter().any(|n| n == s) {
            names.push((*s).to_owned());
        }
    }
    Ok(names.iter().map(|n| probe_one(n)).collect())
}

fn probe_one(name: &str) -> EncoderProbe {
    let Some(factory) = gst::ElementFactory::find(name) else {
        return EncoderProbe {
            element: name.into(),
            hardware: HARDWARE.contains(&name),
            usable: false,
            reason: Some("not installed in this GStreamer".into()),
        };
    };
    let hardware = HARDWARE.contains(&name) || factory.klass().contains("Hardware");
    let (usable, reason) = match factory.create().build() {
        Err(e) => (false, Some(format!("cannot be created: {e}"))),
        Ok(el) => {
            let ok = el.set_state(gst::State::Ready).is_ok();
            let _ = el.set_state(gst::State::Null);
            if ok { (true, None) } else { (false, Some("did not open its device (state READY failed)".into())) }
        }
    };
    EncoderProbe { element: name.into(), hardware, usable, reason }
}

/// The first usable encoder: hardware ones first in preference order, then software.
pub fn pick(probes: &[EncoderProbe]) -> Option<&EncoderProbe> {
    probes.iter().filter(|p| p.usable).min_by_key(|p| !p.hardware)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_prefers_hardware_then_order() {
        let p = |e: &str, hw, ok| EncoderProbe { element: e.into(), hardware: hw, usable: ok, reason: None };
        let list = vec![p("x264enc", false, true), p("vah264enc", true, false), p("v4l2h264enc", true, true)];
        assert_eq!(pick(&list).unwrap().element, "v4l2h264enc");
        let list = vec![p("x264enc", false, true), p("openh264enc", false, true)];
        assert_eq!(pick(&list).unwrap().element, "x264enc");
        assert!(pick(&[p("vah264enc", true, false)]).is_none());
    }

    #[test]
    fn probing_a_missing_element_says_so() {
        let r = probe(&["huisnosuchenc".to_string()]).unwrap();
        assert_eq!(r[0].element, "huisnosuchenc");
        assert!(!r[0].usable);
        assert!(r[0].reason.as_deref().unwrap().contains("not installed"));
        // The software fallbacks are always probed after the preferences.
        assert!(r.iter().any(|p| p.element == "x264enc"));
    }
}
