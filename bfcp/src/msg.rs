//! BFCP messages on the wire (RFC 8855 §5): the common header and the attributes.
//!
//! [`decode`] is bounded ([`MAX_MESSAGE_LEN`], [`MAX_ATTRIBUTES`], [`MAX_DEPTH`]), linear in the
//! input, never panics, and its errors name what is wrong and at which byte offset. [`encode`]
//! writes what [`decode`] reads: `decode(&encode(m)?) == Ok(m)` for every message that encodes.
//!
//! Fragmentation (the F bit, RFC 8855 §5.1; fragments are for UDP, §6.2) is refused: huis only
//! sends small messages, and the floor control messages of room systems fit one datagram.

use thiserror::Error;

/// Length of the common header without fragment fields (RFC 8855 §5.1).
pub const HEADER_LEN: usize = 12;
/// Largest message accepted or produced, header included.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// Most attributes in one message, counting those inside grouped attributes.
pub const MAX_ATTRIBUTES: usize = 512;
/// Deepest nesting of grouped attributes (the RFC's own grammar needs 2).
pub const MAX_DEPTH: usize = 4;

/// Version 1 is used over reliable transports, version 2 over unreliable ones (RFC 8855 §5.1).
pub const VERSION_RELIABLE: u8 = 1;
/// See [`VERSION_RELIABLE`].
pub const VERSION_UNRELIABLE: u8 = 2;

/// The primitives of RFC 8855 §5.1, Table 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Primitive {
    FloorRequest = 1,
    FloorRelease = 2,
    FloorRequestQuery = 3,
    FloorRequestStatus = 4,
    UserQuery = 5,
    UserStatus = 6,
    FloorQuery = 7,
    FloorStatus = 8,
    ChairAction = 9,
    ChairActionAck = 10,
    Hello = 11,
    HelloAck = 12,
    Error = 13,
    FloorRequestStatusAck = 14,
    FloorStatusAck = 15,
    Goodbye = 16,
    GoodbyeAck = 17,
}

impl Primitive {
    /// Every primitive, in wire order.
    pub const ALL: [Primitive; 17] = [
        Primitive::FloorRequest,
        Primitive::FloorRelease,
        Primitive::FloorRequestQuery,
        Primitive::FloorRequestStatus,
        Primitive::UserQuery,
        Primitive::UserStatus,
        Primitive::FloorQuery,
        Primitive::FloorStatus,
        Primitive::ChairAction,
        Primitive::ChairActionAck,
        Primitive::Hello,
        Primitive::HelloAck,
        Primitive::Error,
        Primitive::FloorRequestStatusAck,
        Primitive::FloorStatusAck,
        Primitive::Goodbye,
        Primitive::GoodbyeAck,
    ];

    /// The primitive with wire value `v`, if known.
    pub fn from_u8(v: u8) -> Option<Primitive> {
        Primitive::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }
}

/// Request status values of the REQUEST-STATUS attribute (RFC 8855 §5.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum RequestStatus {
    Pending = 1,
    Accepted = 2,
    Granted = 3,
    Denied = 4,
    Cancelled = 5,
    Released = 6,
    Revoked = 7,
}

impl RequestStatus {
    /// The status with wire value `v`, if known.
    pub fn from_u8(v: u8) -> Option<RequestStatus> {
        use RequestStatus::*;
        [Pending, Accepted, Granted, Denied, Cancelled, Released, Revoked].get(usize::from(v).checked_sub(1)?).copied()
    }
}

/// Error codes of the ERROR-CODE attribute (RFC 8855 §5.2.6, Table 5).
pub mod error_code {
    #![allow(missing_docs)]
    pub const CONFERENCE_DOES_NOT_EXIST: u8 = 1;
    pub const USER_DOES_NOT_EXIST: u8 = 2;
    pub const UNKNOWN_PRIMITIVE: u8 = 3;
    pub const UNKNOWN_MANDATORY_ATTRIBUTE: u8 = 4;
    pub const UNAUTHORIZED_OPERATION: u8 = 5;
    pub const INVALID_FLOOR_ID: u8 = 6;
    pub const FLOOR_REQUEST_ID_DOES_NOT_EXIST: u8 = 7;
    pub const MAX_FLOOR_REQUESTS_REACHED: u8 = 8;
    pub const USE_TLS: u8 = 9;
    pub const UNABLE_TO_PARSE_MESSAGE: u8 = 10;
    pub const USE_DTLS: u8 = 11;
    pub const UNSUPPORTED_VERSION: u8 = 12;
    pub const INCORRECT_MESSAGE_LENGTH: u8 = 13;
    pub const GENERIC_ERROR: u8 = 14;
}

/// Attribute types (RFC 8855 §5.2, Table 2).
pub mod attr_type {
    #![allow(missing_docs)]
    pub const BENEFICIARY_ID: u8 = 1;
    pub const FLOOR_ID: u8 = 2;
    pub const FLOOR_REQUEST_ID: u8 = 3;
    pub const PRIORITY: u8 = 4;
    pub const REQUEST_STATUS: u8 = 5;
    pub const ERROR_CODE: u8 = 6;
    pub const ERROR_INFO: u8 = 7;
    pub const PARTICIPANT_PROVIDED_INFO: u8 = 8;
    pub const STATUS_INFO: u8 = 9;
    pub const SUPPORTED_ATTRIBUTES: u8 = 10;
    pub const SUPPORTED_PRIMITIVES: u8 = 11;
    pub const USER_DISPLAY_NAME: u8 = 12;
    pub const USER_URI: u8 = 13;
    pub const BENEFICIARY_INFORMATION: u8 = 14;
    pub const FLOOR_REQUEST_INFORMATION: u8 = 15;
    pub const REQUESTED_BY_INFORMATION: u8 = 16;
    pub const FLOOR_REQUEST_STATUS: u8 = 17;
    pub const OVERALL_REQUEST_STATUS: u8 = 18;

    /// The RFC's name of an attribute type, for error messages.
    pub fn name(t: u8) -> &'static str {
        match t {
            BENEFICIARY_ID => "BENEFICIARY-ID",
            FLOOR_ID => "FLOOR-ID",
            FLOOR_REQUEST_ID => "FLOOR-REQUEST-ID",
            PRIORITY => "PRIORITY",
            REQUEST_STATUS => "REQUEST-STATUS",
            ERROR_CODE => "ERROR-CODE",
            ERROR_INFO => "ERROR-INFO",
            PARTICIPANT_PROVIDED_INFO => "PARTICIPANT-PROVIDED-INFO",
            STATUS_INFO => "STATUS-INFO",
            SUPPORTED_ATTRIBUTES => "SUPPORTED-ATTRIBUTES",
            SUPPORTED_PRIMITIVES => "SUPPORTED-PRIMITIVES",
            USER_DISPLAY_NAME => "USER-DISPLAY-NAME",
            USER_URI => "USER-URI",
            BENEFICIARY_INFORMATION => "BENEFICIARY-INFORMATION",
            FLOOR_REQUEST_INFORMATION => "FLOOR-REQUEST-INFORMATION",
            REQUESTED_BY_INFORMATION => "REQUESTED-BY-INFORMATION",
            FLOOR_REQUEST_STATUS => "FLOOR-REQUEST-STATUS",
            OVERALL_REQUEST_STATUS => "OVERALL-REQUEST-STATUS",
            _ => "unknown",
        }
    }
}

/// The five grouped attributes (RFC 8855 §5.2.14 to §5.2.18); each starts with a 16-bit id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// BENEFICIARY-INFORMATION; the id is the beneficiary's user id.
    BeneficiaryInformation,
    /// FLOOR-REQUEST-INFORMATION; the id is the floor request id.
    FloorRequestInformation,
    /// REQUESTED-BY-INFORMATION; the id is the requester's user id.
    RequestedByInformation,
    /// FLOOR-REQUEST-STATUS; the id is the floor id.
    FloorRequestStatus,
    /// OVERALL-REQUEST-STATUS; the id is the floor request id.
    OverallRequestStatus,
}

impl Group {
    fn wire(self) -> u8 {
        match self {
            Group::BeneficiaryInformation => attr_type::BENEFICIARY_INFORMATION,
            Group::FloorRequestInformation => attr_type::FLOOR_REQUEST_INFORMATION,
            Group::RequestedByInformation => attr_type::REQUESTED_BY_INFORMATION,
            Group::FloorRequestStatus => attr_type::FLOOR_REQUEST_STATUS,
            Group::OverallRequestStatus => attr_type::OVERALL_REQUEST_STATUS,
        }
    }
}

/// The value of an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// BENEFICIARY-ID (§5.2.1).
    BeneficiaryId(u16),
    /// FLOOR-ID (§5.2.2).
    FloorId(u16),
    /// FLOOR-REQUEST-ID (§5.2.3).
    FloorRequestId(u16),
    /// PRIORITY (§5.2.4): 0 lowest to 4 highest (3 bits on the wire).
    Priority(u8),
    /// REQUEST-STATUS (§5.2.5).
    RequestStatus {
        /// The status.
        status: RequestStatus,
        /// Position in the queue, 0 when not queued.
        queue_position: u8,
    },
    /// ERROR-CODE (§5.2.6). For code 4 the details are the unknown attribute types (7 bits each).
    ErrorCode {
        /// See [`error_code`].
        code: u8,
        /// Error specific details.
        details: Vec<u8>,
    },
    /// ERROR-INFO (§5.2.7), UTF-8.
    ErrorInfo(String),
    /// PARTICIPANT-PROVIDED-INFO (§5.2.8), UTF-8.
    ParticipantProvidedInfo(String),
    /// STATUS-INFO (§5.2.9), UTF-8.
    StatusInfo(String),
    /// SUPPORTED-ATTRIBUTES (§5.2.10): attribute types (7 bits each).
    SupportedAttributes(Vec<u8>),
    /// SUPPORTED-PRIMITIVES (§5.2.11): primitive values.
    SupportedPrimitives(Vec<u8>),
    /// USER-DISPLAY-NAME (§5.2.12), UTF-8.
    UserDisplayName(String),
    /// USER-URI (§5.2.13), UTF-8.
    UserUri(String),
    /// A grouped attribute (§5.2.14 to §5.2.18).
    Grouped {
        /// Which one.
        group: Group,
        /// Its leading 16-bit id (see [`Group`]).
        id: u16,
        /// The attributes it holds.
        attributes: Vec<Attribute>,
    },
}

/// One attribute: its value and the Mandatory (M) bit (RFC 8855 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Whether the receiver must understand it.
    pub mandatory: bool,
    /// The value.
    pub value: Value,
}

impl Attribute {
    /// An attribute with the M bit clear.
    pub fn new(value: Value) -> Attribute {
        Attribute { mandatory: false, value }
    }

    /// A grouped attribute with the M bit clear.
    pub fn group(group: Group, id: u16, attributes: Vec<Attribute>) -> Attribute {
        Attribute::new(Value::Grouped { group, id, attributes })
    }

    /// Its wire type.
    pub fn kind(&self) -> u8 {
        use attr_type::*;
        match &self.value {
            Value::BeneficiaryId(_) => BENEFICIARY_ID,
            Value::FloorId(_) => FLOOR_ID,
            Value::FloorRequestId(_) => FLOOR_REQUEST_ID,
            Value::Priority(_) => PRIORITY,
            Value::RequestStatus { .. } => REQUEST_STATUS,
            Value::ErrorCode { .. } => ERROR_CODE,
            Value::ErrorInfo(_) => ERROR_INFO,
            Value::ParticipantProvidedInfo(_) => PARTICIPANT_PROVIDED_INFO,
            Value::StatusInfo(_) => STATUS_INFO,
            Value::SupportedAttributes(_) => SUPPORTED_ATTRIBUTES,
            Value::SupportedPrimitives(_) => SUPPORTED_PRIMITIVES,
            Value::UserDisplayName(_) => USER_DISPLAY_NAME,
            Value::UserUri(_) => USER_URI,
            Value::Grouped { group, .. } => group.wire(),
        }
    }
}

/// A whole BFCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 1 over TCP/TLS, 2 over UDP (RFC 8855 §5.1).
    pub version: u8,
    /// The R (Transaction Responder) bit: set in responses over unreliable transports.
    pub responder: bool,
    /// The primitive.
    pub primitive: Primitive,
    /// Conference ID.
    pub conference_id: u32,
    /// Transaction ID (0 for server-initiated messages over reliable transports).
    pub transaction_id: u16,
    /// User ID.
    pub user_id: u16,
    /// The attributes at the top level.
    pub attributes: Vec<Attribute>,
}

impl Message {
    /// The first top-level attribute matching `f`.
    pub fn find<T>(&self, f: impl Fn(&Value) -> Option<T>) -> Option<T> {
        self.attributes.iter().find_map(|a| f(&a.value))
    }
}

/// The common header alone, readable even when the rest of the message is not (to answer with
/// an Error in the right transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Version field.
    pub version: u8,
    /// R bit.
    pub responder: bool,
    /// F bit.
    pub fragmented: bool,
    /// Raw primitive value.
    pub primitive: u8,
    /// Payload length in bytes (the field times 4).
    pub payload_len: usize,
    /// Conference ID.
    pub conference_id: u32,
    /// Transaction ID.
    pub transaction_id: u16,
    /// User ID.
    pub user_id: u16,
}

/// Why bytes are not a BFCP message. Offsets count from the first byte of the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Fewer than 12 bytes.
    #[error("truncated header: {len} bytes, the common header has 12")]
    TruncatedHeader {
        /// Bytes present.
        len: usize,
    },
    /// Version other than 1 or 2.
    #[error("unsupported version {version} at byte 0")]
    BadVersion {
        /// The version field.
        version: u8,
    },
    /// The F bit is set.
    #[error("fragmented message (F bit at byte 0): fragmentation is not supported")]
    Fragmented,
    /// Unknown primitive value.
    #[error("unknown primitive {primitive} at byte 1")]
    UnknownPrimitive {
        /// The value.
        primitive: u8,
    },
    /// Declared or actual size above [`MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Size.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The payload length field does not match the bytes present.
    #[error("payload length at byte 2 says {declared} bytes, {present} follow the header")]
    LengthMismatch {
        /// From the header.
        declared: usize,
        /// Present.
        present: usize,
    },
    /// A malformed attribute.
    #[error("attribute {name} (type {kind}) at byte {offset}: {what}")]
    Attribute {
        /// Its type.
        kind: u8,
        /// The RFC's name of the type.
        name: &'static str,
        /// Where it starts.
        offset: usize,
        /// What is wrong.
        what: String,
    },
    /// Attributes of unknown type with the M bit set (RFC 8855 §13.1: answered with Error 4).
    #[error("unknown mandatory attribute type(s) {kinds:?}, the first at byte {offset}")]
    UnknownMandatory {
        /// Their types (at most 32 are listed).
        kinds: Vec<u8>,
        /// Where the first starts.
        offset: usize,
    },
    /// More than [`MAX_ATTRIBUTES`].
    #[error("more than {max} attributes (at byte {offset})")]
    TooManyAttributes {
        /// Limit.
        max: usize,
        /// Where the first one too many starts.
        offset: usize,
    },
    /// Grouped attributes nested deeper than [`MAX_DEPTH`].
    #[error("grouped attributes nested deeper than {max} at byte {offset}")]
    TooDeep {
        /// Limit.
        max: usize,
        /// Where the too deep attribute starts.
        offset: usize,
    },
}

/// Why a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// An attribute longer than its 8-bit length field allows (255 bytes).
    #[error("attribute {name} would be {len} bytes, the length field allows 255")]
    AttributeTooLong {
        /// The RFC's name of the type.
        name: &'static str,
        /// Its length.
        len: usize,
    },
    /// The message exceeds [`MAX_MESSAGE_LEN`].
    #[error("message would be {len} bytes, the limit is {max}")]
    TooLong {
        /// Size.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A version other than 1 or 2.
    #[error("version {0} cannot be sent")]
    BadVersion(u8),
    /// A value wider than its field: a PRIORITY above 7, an attribute type above 127.
    #[error("attribute {name}: value {value} does not fit its field")]
    OutOfRange {
        /// The RFC's name of the attribute type.
        name: &'static str,
        /// The value.
        value: u8,
    },
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Reads the common header (RFC 8855 §5.1) without looking at the payload.
pub fn decode_header(b: &[u8]) -> Result<Header, DecodeError> {
    if b.len() < HEADER_LEN {
        return Err(DecodeError::TruncatedHeader { len: b.len() });
    }
    Ok(Header {
        version: b[0] >> 5,
        responder: b[0] & 0x10 != 0,
        fragmented: b[0] & 0x08 != 0,
        primitive: b[1],
        payload_len: usize::from(u16::from_be_bytes([b[2], b[3]])) * 4,
        conference_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        transaction_id: u16::from_be_bytes([b[8], b[9]]),
        user_id: u16::from_be_bytes([b[10], b[11]]),
    })
}

/// Decodes one whole message; `b` must hold exactly one message (a datagram, or what
/// [`crate::framer::StreamFramer`] cut from a stream).
pub fn decode(b: &[u8]) -> Result<Message, DecodeError> {
    let h = decode_header(b)?;
    if b.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong { len: b.len(), max: MAX_MESSAGE_LEN });
    }
    if h.version != VERSION_RELIABLE && h.version != VERSION_UNRELIABLE {
        return Err(DecodeError::BadVersion { version: h.version });
    }
    if h.fragmented {
        return Err(DecodeError::Fragmented);
    }
    let primitive = Primitive::from_u8(h.primitive).ok_or(DecodeError::UnknownPrimitive { primitive: h.primitive })?;
    let present = b.len() - HEADER_LEN;
    if h.payload_len != present {
        return Err(DecodeError::LengthMismatch { declared: h.payload_len, present });
    }
    let mut d = Decoder { buf: b, count: 0, unknown: Vec::new(), unknown_at: 0 };
    let attributes = d.attributes(HEADER_LEN, b.len(), 0)?;
    if !d.unknown.is_empty() {
        return Err(DecodeError::UnknownMandatory { kinds: d.unknown, offset: d.unknown_at });
    }
    Ok(Message {
        version: h.version,
        responder: h.responder,
        primitive,
        conference_id: h.conference_id,
        transaction_id: h.transaction_id,
        user_id: h.user_id,
        attributes,
    })
}

struct Decoder<'a> {
    buf: &'a [u8],
    count: usize,
    unknown: Vec<u8>,
    unknown_at: usize,
}

impl Decoder<'_> {
    /// The attributes in `buf[start..end]`.
    fn attributes(&mut self, start: usize, end: usize, depth: usize) -> Result<Vec<Attribute>, DecodeError> {
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            if self.count >= MAX_ATTRIBUTES {
                return Err(DecodeError::TooManyAttributes { max: MAX_ATTRIBUTES, offset: at });
            }
            self.count += 1;
            let err =
                |kind: u8, what: String| DecodeError::Attribute { kind, name: attr_type::name(kind), offset: at, what };
            if end - at < 2 {
                return Err(err(0, format!("{} byte(s) left, an attribute header has 2", end - at)));
            }
            let kind = self.buf[at] >> 1;
            let mandatory = self.buf[at] & 1 != 0;
            let len = usize::from(self.buf[at + 1]);
            if len < 2 {
                return Err(err(kind, format!("length {len} is shorter than the attribute's own header")));
            }
            if at + len > end {
                return Err(err(kind, format!("length {len} runs past the end of its container at byte {end}")));
            }
            // Padding to 4 bytes follows; a group's last member may leave it to the group's own.
            let next = (at + pad4(len)).min(end);
            let body = &self.buf[at + 2..at + len];
            let value = match self.value(kind, body, at, depth)? {
                Some(v) => v,
                None => {
                    if mandatory && self.unknown.len() < 32 {
                        if self.unknown.is_empty() {
                            self.unknown_at = at;
                        }
                        self.unknown.push(kind);
                    }
                    at = next;
                    continue;
                }
            };
            out.push(Attribute { mandatory, value });
            at = next;
        }
        Ok(out)
    }

    fn value(&mut self, kind: u8, body: &[u8], at: usize, depth: usize) -> Result<Option<Value>, DecodeError> {
        use attr_type::*;
        let err = |what: String| DecodeError::Attribute { kind, name: name(kind), offset: at, what };
        let u16_body = || -> Result<u16, DecodeError> {
            if body.len() != 2 {
                return Err(err(format!("length {}, must be 4", body.len() + 2)));
            }
            Ok(u16::from_be_bytes([body[0], body[1]]))
        };
        let text = || -> Result<String, DecodeError> {
            String::from_utf8(body.to_vec())
                .map_err(|e| err(format!("not UTF-8 at byte {}", at + 2 + e.utf8_error().valid_up_to())))
        };
        Ok(Some(match kind {
            BENEFICIARY_ID => Value::BeneficiaryId(u16_body()?),
            FLOOR_ID => Value::FloorId(u16_body()?),
            FLOOR_REQUEST_ID => Value::FloorRequestId(u16_body()?),
            PRIORITY => Value::Priority((u16_body()? >> 13) as u8),
            REQUEST_STATUS => {
                let v = u16_body()?;
                let raw = (v >> 8) as u8;
                let status = RequestStatus::from_u8(raw).ok_or_else(|| err(format!("unknown request status {raw}")))?;
                Value::RequestStatus { status, queue_position: v as u8 }
            }
            ERROR_CODE => {
                let Some((&code, details)) = body.split_first() else {
                    return Err(err("length 2, an error code needs 3".into()));
                };
                let details = if code == error_code::UNKNOWN_MANDATORY_ATTRIBUTE {
                    details.iter().map(|d| d >> 1).collect()
                } else {
                    details.to_vec()
                };
                Value::ErrorCode { code, details }
            }
            ERROR_INFO => Value::ErrorInfo(text()?),
            PARTICIPANT_PROVIDED_INFO => Value::ParticipantProvidedInfo(text()?),
            STATUS_INFO => Value::StatusInfo(text()?),
            SUPPORTED_ATTRIBUTES => Value::SupportedAttributes(body.iter().map(|b| b >> 1).collect()),
            SUPPORTED_PRIMITIVES => Value::SupportedPrimitives(body.to_vec()),
            USER_DISPLAY_NAME => Value::UserDisplayName(text()?),
            USER_URI => Value::UserUri(text()?),
            BENEFICIARY_INFORMATION..=OVERALL_REQUEST_STATUS => {
                let group = match kind {
                    BENEFICIARY_INFORMATION => Group::BeneficiaryInformation,
                    FLOOR_REQUEST_INFORMATION => Group::FloorRequestInformation,
                    REQUESTED_BY_INFORMATION => Group::RequestedByInformation,
                    FLOOR_REQUEST_STATUS => Group::FloorRequestStatus,
                    _ => Group::OverallRequestStatus,
                };
                if body.len() < 2 {
                    return Err(err(format!("length {}, a grouped attribute needs at least 4", body.len() + 2)));
                }
                if depth + 1 >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep { max: MAX_DEPTH, offset: at });
                }
                let id = u16::from_be_bytes([body[0], body[1]]);
                let start = at + 4;
                let attributes = self.attributes(start, start + body.len() - 2, depth + 1)?;
                Value::Grouped { group, id, attributes }
            }
            _ => return Ok(None),
        }))
    }
}

/// Encodes a message (RFC 8855 §5); padding is zero.
pub fn encode(m: &Message) -> Result<Vec<u8>, EncodeError> {
    if m.version != VERSION_RELIABLE && m.version != VERSION_UNRELIABLE {
        return Err(EncodeError::BadVersion(m.version));
    }
    let mut out = Vec::with_capacity(64);
    out.push(m.version << 5 | if m.responder { 0x10 } else { 0 });
    out.push(m.primitive as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&m.conference_id.to_be_bytes());
    out.extend_from_slice(&m.transaction_id.to_be_bytes());
    out.extend_from_slice(&m.user_id.to_be_bytes());
    for a in &m.attributes {
        encode_attribute(&mut out, a)?;
        if out.len() > MAX_MESSAGE_LEN {
            return Err(EncodeError::TooLong { len: out.len(), max: MAX_MESSAGE_LEN });
        }
    }
    let words = (out.len() - HEADER_LEN) / 4;
    out[2..4].copy_from_slice(&(words as u16).to_be_bytes());
    Ok(out)
}

fn encode_attribute(out: &mut Vec<u8>, a: &Attribute) -> Result<(), EncodeError> {
    let start = out.len();
    let kind = a.kind();
    let range = |value: u8| EncodeError::OutOfRange { name: attr_type::name(kind), value };
    match &a.value {
        Value::Priority(p) if *p > 7 => return Err(range(*p)),
        Value::SupportedAttributes(v)
        | Value::ErrorCode { code: error_code::UNKNOWN_MANDATORY_ATTRIBUTE, details: v } => {
            if let Some(t) = v.iter().find(|t| **t > 127) {
                return Err(range(*t));
            }
        }
        _ => {}
    }
    out.push(kind << 1 | u8::from(a.mandatory));
    out.push(0);
    match &a.value {
        Value::BeneficiaryId(v) | Value::FloorId(v) | Value::FloorRequestId(v) => {
            out.extend_from_slice(&v.to_be_bytes())
        }
        Value::Priority(p) => out.extend_from_slice(&(u16::from(*p) << 13).to_be_bytes()),
        Value::RequestStatus { status, queue_position } => out.extend_from_slice(&[*status as u8, *queue_position]),
        Value::ErrorCode { code, details } => {
            out.push(*code);
            if *code == error_code::UNKNOWN_MANDATORY_ATTRIBUTE {
                out.extend(details.iter().map(|d| d << 1));
            } else {
                out.extend_from_slice(details);
            }
        }
        Value::ErrorInfo(s)
        | Value::ParticipantProvidedInfo(s)
        | Value::StatusInfo(s)
        | Value::UserDisplayName(s)
        | Value::UserUri(s) => out.extend_from_slice(s.as_bytes()),
        Value::SupportedAttributes(v) => out.extend(v.iter().map(|t| t << 1)),
        Value::SupportedPrimitives(v) => out.extend_from_slice(v),
        Value::Grouped { id, attributes, .. } => {
            out.extend_from_slice(&id.to_be_bytes());
            for sub in attributes {
                encode_attribute(out, sub)?;
                if out.len() - start > 255 {
                    break;
                }
            }
        }
    }
    let len = out.len() - start;
    if len > 255 {
        return Err(EncodeError::AttributeTooLong { name: attr_type::name(kind), len });
    }
    out[start + 1] = len as u8;
    out.resize(start + pad4(len), 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(primitive: Primitive, attributes: Vec<Attribute>) -> Message {
        Message {
            version: 2,
            responder: false,
            primitive,
            conference_id: 0x0102_0304,
            transaction_id: 0x0506,
            user_id: 0x0708,
            attributes,
        }
    }

    fn attr_err(r: Result<Message, DecodeError>) -> (u8, usize, String) {
        match r {
            Err(DecodeError::Attribute { kind, offset, what, .. }) => (kind, offset, what),
            other => panic!("expected an attribute error, got {other:?}"),
        }
    }

    /// RFC 8855 §5.1 (common header) and §5.2.2 (FLOOR-ID, Unsigned16): a FloorRequest over UDP
    /// (version 2) for floor 1, M bit set on FLOOR-ID.
    #[test]
    fn floor_request_vector() {
        let wire = [
            0x40, 0x01, 0x00, 0x01, // ver 2, R 0, F 0; primitive 1; payload 1 word
            0x00, 0x00, 0x00, 0x2a, // conference id 42
            0x00, 0x07, 0x00, 0x03, // transaction 7, user 3
            0x05, 0x04, 0x00, 0x01, // type 2 << 1 | M, length 4, floor id 1
        ];
        let m = decode(&wire).unwrap();
        assert_eq!(m.version, 2);
        assert!(!m.responder);
        assert_eq!(m.primitive, Primitive::FloorRequest);
        assert_eq!((m.conference_id, m.transaction_id, m.user_id), (42, 7, 3));
        assert_eq!(m.attributes, vec![Attribute { mandatory: true, value: Value::FloorId(1) }]);
        assert_eq!(encode(&m).unwrap(), wire);
    }

    /// RFC 8855 §5.3.4 FloorRequestStatus: FLOOR-REQUEST-INFORMATION (§5.2.15) holding
    /// OVERALL-REQUEST-STATUS (§5.2.18) with REQUEST-STATUS Granted (§5.2.5), and
    /// FLOOR-REQUEST-STATUS (§5.2.17) for floor 1; R bit set (a response over UDP, §5.1).
    #[test]
    fn floor_request_status_granted_vector() {
        let wire = [
            0x50, 0x04, 0x00, 0x04, // ver 2, R 1; FloorRequestStatus; 4 words
            0x00, 0x00, 0x00, 0x01, 0x12, 0x34, 0x00, 0x02, // conf 1, tid 0x1234, user 2
            0x1e, 0x10, 0x00, 0x09, // FLOOR-REQUEST-INFORMATION len 16, frid 9
            0x24, 0x08, 0x00, 0x09, // OVERALL-REQUEST-STATUS len 8, frid 9
            0x0a, 0x04, 0x03, 0x00, // REQUEST-STATUS Granted, queue 0
            0x22, 0x04, 0x00, 0x01, // FLOOR-REQUEST-STATUS len 4, floor 1
        ];
        let m = decode(&wire).unwrap();
        let granted = Attribute::new(Value::RequestStatus { status: RequestStatus::Granted, queue_position: 0 });
        let want = Message {
            version: 2,
            responder: true,
            primitive: Primitive::FloorRequestStatus,
            conference_id: 1,
            transaction_id: 0x1234,
            user_id: 2,
            attributes: vec![Attribute::group(
                Group::FloorRequestInformation,
                9,
                vec![
                    Attribute::group(Group::OverallRequestStatus, 9, vec![granted]),
                    Attribute::group(Group::FloorRequestStatus, 1, vec![]),
                ],
            )],
        };
        assert_eq!(m, want);
        assert_eq!(encode(&want).unwrap(), wire);
    }

    /// RFC 8855 §5.2.6/§5.2.7: Error with ERROR-CODE 4 listing the unknown types, and ERROR-INFO
    /// "x" (length 3, one byte of padding).
    #[test]
    fn error_vector_with_padding() {
        let wire = [
            0x20,
            0x0d,
            0x00,
            0x02,
            0,
            0,
            0,
            1,
            0,
            1,
            0,
            1, // ver 1, Error, 2 words
            0x0c,
            0x04,
            0x04,
            0x64 << 1, // ERROR-CODE len 4, code 4, unknown type 100
            0x0e,
            0x03,
            b'x',
            0x00, // ERROR-INFO len 3 + pad
        ];
        let m = decode(&wire).unwrap();
        assert_eq!(
            m.attributes,
            vec![
                Attribute::new(Value::ErrorCode { code: 4, details: vec![100] }),
                Attribute::new(Value::ErrorInfo("x".into()))
            ]
        );
        assert_eq!(encode(&m).unwrap(), wire);
    }

    #[test]
    fn every_attribute_round_trips() {
        let all = vec![
            Attribute { mandatory: true, value: Value::BeneficiaryId(5) },
            Attribute::new(Value::FloorId(1)),
            Attribute::new(Value::FloorRequestId(77)),
            Attribute::new(Value::Priority(4)),
            Attribute::new(Value::RequestStatus { status: RequestStatus::Accepted, queue_position: 3 }),
            Attribute::new(Value::ErrorCode { code: 14, details: vec![1, 2, 3] }),
            Attribute::new(Value::ErrorInfo("bad".into())),
            Attribute::new(Value::ParticipantProvidedInfo("slides".into())),
            Attribute::new(Value::StatusInfo("ok".into())),
            Attribute::new(Value::SupportedAttributes((1..=18).collect())),
            Attribute::new(Value::SupportedPrimitives((1..=17).collect())),
            Attribute::new(Value::UserDisplayName("Salle 4 — Élysée".into())),
            Attribute::new(Value::UserUri("sip:room@example.org".into())),
            Attribute::group(Group::BeneficiaryInformation, 5, vec![Attribute::new(Value::UserUri("sip:a@b".into()))]),
            Attribute::group(
                Group::FloorRequestInformation,
                77,
                vec![
                    Attribute::group(Group::OverallRequestStatus, 77, vec![]),
                    Attribute::group(Group::FloorRequestStatus, 1, vec![]),
                    Attribute::group(Group::RequestedByInformation, 6, vec![]),
                ],
            ),
        ];
        for p in Primitive::ALL {
            for version in [1, 2] {
                let m = Message { version, responder: version == 2, ..msg(p, all.clone()) };
                let wire = encode(&m).unwrap();
                assert_eq!(wire.len() % 4, 0);
                assert_eq!(decode(&wire).unwrap(), m);
            }
        }
    }

    #[test]
    fn header_errors() {
        let good = encode(&msg(Primitive::Hello, vec![])).unwrap();
        assert_eq!(decode(&good[..11]), Err(DecodeError::TruncatedHeader { len: 11 }));
        let mut b = good.clone();
        b[0] = 3 << 5;
        assert_eq!(decode(&b), Err(DecodeError::BadVersion { version: 3 }));
        b = good.clone();
        b[0] |= 0x08;
        assert_eq!(decode(&b), Err(DecodeError::Fragmented));
        b = good.clone();
        b[1] = 18;
        assert_eq!(decode(&b), Err(DecodeError::UnknownPrimitive { primitive: 18 }));
        b = good.clone();
        b[3] = 1; // one word announced, none present
        assert_eq!(decode(&b), Err(DecodeError::LengthMismatch { declared: 4, present: 0 }));
        b = good.clone();
        b.extend_from_slice(&[0; 4]); // trailing bytes past the declared length
        assert_eq!(decode(&b), Err(DecodeError::LengthMismatch { declared: 0, present: 4 }));
        let huge = vec![0x40; MAX_MESSAGE_LEN + 4];
        assert!(matches!(decode(&huge), Err(DecodeError::TooLong { .. })));
    }

    fn with_payload(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0x40, 0x0b, 0, (payload.len() / 4) as u8, 0, 0, 0, 1, 0, 1, 0, 1];
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn attribute_errors_name_type_and_offset() {
        // Length 0 and 1: shorter than the attribute's own header.
        assert_eq!(attr_err(decode(&with_payload(&[0x04, 0x00, 0, 0]))).1, 12);
        assert!(attr_err(decode(&with_payload(&[0x04, 0x01, 0, 0]))).2.contains("length 1"));
        // Overlong: runs past the message.
        let (kind, offset, what) = attr_err(decode(&with_payload(&[0x0e, 0x09, b'a', b'b'])));
        assert_eq!((kind, offset), (attr_type::ERROR_INFO, 12));
        assert!(what.contains("past the end"), "{what}");
        // FLOOR-ID of length 6 (Unsigned16 must be 4), second attribute at byte 16.
        let (kind, offset, _) = attr_err(decode(&with_payload(&[0x04, 0x04, 0, 1, 0x04, 0x06, 0, 1, 0, 0, 0, 0])));
        assert_eq!((kind, offset), (attr_type::FLOOR_ID, 16));
        // Unknown request status.
        assert!(attr_err(decode(&with_payload(&[0x0a, 0x04, 9, 0]))).2.contains("request status 9"));
        // Invalid UTF-8 text.
        assert!(attr_err(decode(&with_payload(&[0x0e, 0x04, 0xff, 0xfe]))).2.contains("UTF-8"));
        // A grouped attribute whose member runs past the group (group len 8, member len 8).
        let (kind, offset, _) = attr_err(decode(&with_payload(&[0x1e, 0x08, 0, 1, 0x04, 0x08, 0, 1, 0, 0, 0, 0])));
        assert_eq!((kind, offset), (attr_type::FLOOR_ID, 16));
    }

    #[test]
    fn padding_is_ignored_and_a_groups_last_member_may_leave_padding_out() {
        // ERROR-INFO "ab" padded with garbage: accepted, padding ignored.
        let m = decode(&with_payload(&[0x0e, 0x04, b'a', b'b', 0x0e, 0x03, b'c', 0xff])).unwrap();
        assert_eq!(m.attributes.len(), 2);
        // A BENEFICIARY-INFORMATION of length 7 whose USER-URI "x" (length 3) is padded by the group.
        let m = decode(&with_payload(&[0x1c, 0x07, 0, 5, 0x1a, 0x03, b'x', 0])).unwrap();
        assert_eq!(
            m.attributes,
            vec![Attribute::group(Group::BeneficiaryInformation, 5, vec![Attribute::new(Value::UserUri("x".into()))])]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut a = Attribute::new(Value::FloorId(1));
        for _ in 0..MAX_DEPTH {
            a = Attribute::group(Group::FloorRequestStatus, 1, vec![a]);
        }
        let wire = encode(&msg(Primitive::FloorStatus, vec![a])).unwrap();
        assert!(matches!(decode(&wire), Err(DecodeError::TooDeep { offset: 24, .. })), "{:?}", decode(&wire));
    }

    #[test]
    fn attribute_count_is_bounded() {
        let many = vec![Attribute::new(Value::FloorId(1)); MAX_ATTRIBUTES + 1];
        let wire = encode(&msg(Primitive::FloorStatus, many)).unwrap();
        assert!(matches!(decode(&wire), Err(DecodeError::TooManyAttributes { .. })));
    }

    #[test]
    fn unknown_attributes() {
        // Type 100 without M: skipped. With M: reported with its offset, for Error code 4.
        let m = decode(&with_payload(&[100 << 1, 4, 0, 0, 0x04, 0x04, 0, 1])).unwrap();
        assert_eq!(m.attributes, vec![Attribute::new(Value::FloorId(1))]);
        assert_eq!(
            decode(&with_payload(&[0x04, 0x04, 0, 1, 100 << 1 | 1, 4, 0, 0])),
            Err(DecodeError::UnknownMandatory { kinds: vec![100], offset: 16 })
        );
    }

    #[test]
    fn encoder_refuses_values_wider_than_their_field() {
        for v in [
            Value::Priority(8),
            Value::SupportedAttributes(vec![1, 128]),
            Value::ErrorCode { code: 4, details: vec![200] },
        ] {
            let m = msg(Primitive::Hello, vec![Attribute::new(v)]);
            assert!(matches!(encode(&m), Err(EncodeError::OutOfRange { .. })), "{m:?}");
        }
        // Other error codes carry free-form details.
        let m = msg(Primitive::Error, vec![Attribute::new(Value::ErrorCode { code: 14, details: vec![200] })]);
        assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn encoder_refuses_overlong_attributes() {
        let long = Attribute::new(Value::UserDisplayName("x".repeat(254)));
        assert!(matches!(encode(&msg(Primitive::Hello, vec![long])), Err(EncodeError::AttributeTooLong { .. })));
        let ok = Attribute::new(Value::UserDisplayName("x".repeat(253)));
        let m = msg(Primitive::Hello, vec![ok]);
        assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
    }

    /// Garbage never panics (a cheap stand-in for the fuzz target in the default test run).
    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 0x1234_5678;
        let seed = encode(&msg(
            Primitive::FloorRequestStatus,
            vec![Attribute::group(
                Group::FloorRequestInformation,
                1,
                vec![Attribute::group(Group::OverallRequestStatus, 1, vec![])],
            )],
        ))
        .unwrap();
        for _ in 0..20_000 {
            let mut b = seed.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = (x as usize) % b.len();
                b[i] = (x >> 24) as u8;
            }
            if let Ok(m) = decode(&b) {
                assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
            }
        }
    }
}
