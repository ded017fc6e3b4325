use std::net::SocketAddr;

/// What can go wrong on the media path. Messages say what failed, where, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),

    #[error("GStreamer element `{element}` ({purpose}) is not installed; install the Debian package {package}")]
    MissingElement { element: &'static str, purpose: &'static str, package: &'static str },

    #[error("cannot bind the RTP/RTCP socket on {addr}: {reason}; choose another port or address")]
    Bind { addr: SocketAddr, reason: String },

    #[error("invalid media parameters: {0}")]
    InvalidParams(String),

    #[error("cannot build the media pipeline: {0}")]
    Pipeline(String),

    #[error("media pipeline error in {element}: {message}{}", debug.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Stream { element: String, message: String, debug: Option<String> },

    #[error("`{0}` is not a DTMF digit; use 0-9, *, #, A-D, or ',' for a pause")]
    InvalidDtmf(char),

    #[error("this call has no telephone-event payload type negotiated, so RFC 4733 DTMF cannot be sent")]
    NoTelephoneEvent,

    #[error("the media session has stopped")]
    Stopped,
}

impl MediaError {
    pub(crate) fn pipeline(what: impl std::fmt::Display) -> Self {
        MediaError::Pipeline(what.to_string())
    }
}
