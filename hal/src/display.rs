//! The HDMI screen: which GStreamer sink shows video on it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplaySink {
    /// kmssink on a DRM connector (`HDMI-A-1`); huisd owns the screen.
    Kms { connector: String },
    /// waylandsink under a compositor (cage, weston kiosk).
    Wayland,
    /// No screen: frames are kept in memory so a screenshot can be taken.
    Sim,
}

pub trait Display: Send + Sync {
    fn size(&self) -> (u32, u32);
    fn sink(&self) -> DisplaySink;
    /// A gst-launch style description of the sink element.
    fn gst_sink(&self) -> String {
        match self.sink() {
            // kmssink picks the first connected connector itself; `HDMI-A-1`
            // is documentation of which one the board expects.
            DisplaySink::Kms { .. } => "kmssink sync=false skip-vsync=true".into(),
            DisplaySink::Wayland => "waylandsink sync=false".into(),
            DisplaySink::Sim => "appsink name=screen max-buffers=1 drop=true sync=false".into(),
        }
    }
}

pub struct BoardDisplay {
    pub sink: DisplaySink,
    pub width: u32,
    pub height: u32,
}

impl Display for BoardDisplay {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn sink(&self) -> DisplaySink {
        self.sink.clone()
    }
}
