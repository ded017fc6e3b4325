//! What can go wrong with a call request, typed so that each surface (D-Bus, the fleet) can say
//! it its own way.

/// Why a call request was refused or failed. The text is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The text is not a destination.
    #[error("{0}")]
    InvalidDestination(String),
    /// DTMF digits outside `0-9 * # A-D ,`.
    #[error("'{0}' is not a DTMF string (0-9 * # A-D, and , for a pause)")]
    InvalidDtmf(String),
    /// No backend is built for this kind of destination.
    #[error("{0}")]
    Unsupported(String),
    /// The backend that would take it is not running.
    #[error("{backend} is not running: {reason}")]
    BackendDown { backend: &'static str, reason: String },
    /// One call at a time.
    #[error("the room is already in a call; hang up first")]
    Busy,
    #[error("the room is not in a call")]
    NotInCall,
    #[error("there is no call {0}")]
    NoSuchCall(u32),
    #[error("there is no incoming call to answer")]
    NothingToAnswer,
    #[error("the call is not established yet")]
    NotEstablished,
    /// The destination's host could not be resolved or reached.
    #[error("{0}")]
    Unreachable(String),
    /// The far end's offer cannot be used.
    #[error("{0}")]
    Unusable(String),
    /// Something on our side: no free port, a media pipeline that does not start.
    #[error("{0}")]
    Local(String),
    /// The protocol core refused the request in this state.
    #[error("{0}")]
    Protocol(String),
    /// Hung up before it got under way.
    #[error("the call was cancelled before it started")]
    Cancelled,
    /// The backend stopped while the request was on its way.
    #[error("huisd is shutting down")]
    ShuttingDown,
}
