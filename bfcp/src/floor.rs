//! Reading and writing the floor state carried by FloorRequestStatus and FloorStatus
//! (RFC 8855 §5.3.4, §5.3.8): FLOOR-REQUEST-INFORMATION with its OVERALL-REQUEST-STATUS,
//! FLOOR-REQUEST-STATUS, BENEFICIARY-INFORMATION and REQUESTED-BY-INFORMATION.

use crate::msg::{Attribute, Group, RequestStatus, Value};

/// One FLOOR-REQUEST-INFORMATION, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorRequestInfo {
    /// Its floor request id.
    pub floor_request_id: u16,
    /// The first floor of the request (huis requests one at a time).
    pub floor_id: Option<u16>,
    /// The overall status, else the first floor's.
    pub status: Option<RequestStatus>,
    /// Queue position with the status.
    pub queue_position: u8,
    /// STATUS-INFO text, if any.
    pub status_info: Option<String>,
    /// BENEFICIARY-INFORMATION's user, else REQUESTED-BY-INFORMATION's.
    pub user_id: Option<u16>,
}

fn status_of(attrs: &[Attribute]) -> (Option<(RequestStatus, u8)>, Option<String>) {
    let st = attrs.iter().find_map(|a| match a.value {
        Value::RequestStatus { status, queue_position } => Some((status, queue_position)),
        _ => None,
    });
    let info = attrs.iter().find_map(|a| match &a.value {
        Value::StatusInfo(s) => Some(s.clone()),
        _ => None,
    });
    (st, info)
}

/// Every FLOOR-REQUEST-INFORMATION among `attrs`.
pub fn floor_requests(attrs: &[Attribute]) -> Vec<FloorRequestInfo> {
    let mut out = Vec::new();
    for a in attrs {
        let Value::Grouped { group: Group::FloorRequestInformation, id, attributes } = &a.value else { continue };
        let mut info = FloorRequestInfo {
            floor_request_id: *id,
            floor_id: None,
            status: None,
            queue_position: 0,
            status_info: None,
            user_id: None,
        };
        let mut floor_status = None;
        let mut requested_by = None;
        for sub in attributes {
            let Value::Grouped { group, id, attributes } = &sub.value else { continue };
            match group {
                Group::OverallRequestStatus => {
                    let (st, text) = status_of(attributes);
                    if let Some((s, q)) = st {
                        info.status = Some(s);
                        info.queue_position = q;
                    }
                    info.status_info = info.status_info.take().or(text);
                }
                Group::FloorRequestStatus if info.floor_id.is_none() => {
                    info.floor_id = Some(*id);
                    let (st, text) = status_of(attributes);
                    floor_status = st;
                    info.status_info = info.status_info.take().or(text);
                }
                Group::BeneficiaryInformation => info.user_id = Some(*id),
                Group::RequestedByInformation => requested_by = Some(*id),
                _ => {}
            }
        }
        if info.status.is_none()
            && let Some((s, q)) = floor_status
        {
            info.status = Some(s);
            info.queue_position = q;
        }
        info.user_id = info.user_id.or(requested_by);
        out.push(info);
    }
    out
}

/// A FLOOR-REQUEST-INFORMATION for one floor, the status in both OVERALL-REQUEST-STATUS and
/// FLOOR-REQUEST-STATUS (peers read one or the other), with the beneficiary when known.
pub fn floor_request_information(
    floor_request_id: u16,
    floor_id: u16,
    status: RequestStatus,
    user_id: Option<u16>,
) -> Attribute {
    let st = || Attribute::new(Value::RequestStatus { status, queue_position: 0 });
    let mut members = vec![
        Attribute::group(Group::OverallRequestStatus, floor_request_id, vec![st()]),
        Attribute::group(Group::FloorRequestStatus, floor_id, vec![st()]),
    ];
    if let Some(u) = user_id {
        members.push(Attribute::group(Group::BeneficiaryInformation, u, vec![]));
    }
    Attribute::group(Group::FloorRequestInformation, floor_request_id, members)
}
