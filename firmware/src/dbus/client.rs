//! Client side: typed proxies for huisctl and the tests.

use zbus::proxy;

#[proxy(interface = "org.huis.Room1", default_service = "org.huis.Room1", default_path = "/org/huis/Room1")]
pub trait Room1 {
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn room_name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn board(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn muted(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn leds(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn registration(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sip_uri(&self) -> zbus::Result<String>;
    fn dial(&self, uri: &str, options: std::collections::HashMap<&str, zbus::Variant<'_>>) -> zbus::Result<()>;
    fn answer(&self) -> zbus::Result<()>;
    fn hangup(&self) -> zbus::Result<()>;
    fn set_muted(&self, muted: bool) -> zbus::Result<()>;
    fn press_button(&self, button: &str) -> zbus::Result<()>;
    fn start_presentation(&self) -> zbus::Result<()>;
    fn stop_presentation(&self) -> zbus::Result<()>;
    fn simulate_content_input(&self, plugged: bool) -> zbus::Result<()>;
    #[zbus(property)]
    fn content_input(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn presentation(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn presentation_holder(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn content_mode(&self) -> zbus::Result<(u32, u32, u32)>;
    #[zbus(signal)]
    fn incoming_call(&self, remote_uri: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn call_ended(&self, reason: &str) -> zbus::Result<()>;
}

#[proxy(interface = "org.huis.Audio1", default_service = "org.huis.Room1", default_path = "/org/huis/Room1/Audio")]
pub trait Audio1 {
    #[zbus(property)]
    fn talker_azimuth(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn talker_active(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn input_level(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn output_level(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn echo_cancellation(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn beamforming(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn noise_suppression(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn gain_control(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn output_volume(&self) -> zbus::Result<u32>;
}

#[proxy(interface = "org.huis.Video1", default_service = "org.huis.Room1", default_path = "/org/huis/Room1/Video")]
pub trait Video1 {
    #[zbus(property)]
    fn camera(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn encoder(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn encoder_hardware(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn width(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn height(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn framerate(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn self_view(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn stats(&self) -> zbus::Result<std::collections::HashMap<String, f64>>;
    fn screenshot(&self) -> zbus::Result<Vec<u8>>;
}

#[proxy(interface = "org.huis.Config1", default_service = "org.huis.Room1", default_path = "/org/huis/Room1/Config")]
pub trait Config1 {
    #[zbus(property)]
    fn path(&self) -> zbus::Result<String>;
    fn keys(&self) -> zbus::Result<Vec<String>>;
    fn get(&self, key: &str) -> zbus::Result<String>;
    fn set(&self, key: &str, value: &str) -> zbus::Result<()>;
}

#[proxy(interface = "org.huis.Call1", default_service = "org.huis.Room1")]
pub trait Call1 {
    #[zbus(property)]
    fn remote_uri(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn direction(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn protocol(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn encrypted(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn media_encryption(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn audio_codec(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn video_codec(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn presentation(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn content_mode(&self) -> zbus::Result<(u32, u32, u32)>;
    #[zbus(property)]
    fn stats(&self) -> zbus::Result<std::collections::HashMap<String, zbus::OwnedVariant>>;
    fn send_dtmf(&self, digits: &str) -> zbus::Result<()>;
    fn hold(&self) -> zbus::Result<()>;
    fn start_video(&self) -> zbus::Result<()>;
    fn stop_video(&self) -> zbus::Result<()>;
    fn resume(&self) -> zbus::Result<()>;
    fn hangup(&self) -> zbus::Result<()>;
    fn answer(&self) -> zbus::Result<()>;
}

#[proxy(interface = "org.huis.Update1", default_service = "org.huis.Room1", default_path = "/org/huis/Room1")]
pub trait Update1 {
    fn install(&self, source: &str) -> zbus::Result<()>;
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String)>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn slots(&self) -> zbus::Result<Vec<(String, String, String, String)>>;
    #[zbus(signal)]
    fn completed(&self, result: i32, message: &str) -> zbus::Result<()>;
}
