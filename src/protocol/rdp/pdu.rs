//! Classification of slow-path PDUs (Share Control header onward) and the
//! channel number fast-path PDUs are recorded under. Cheap tests on header
//! bytes first: the relay looks at every PDU.

use ironrdp_core::decode;
use ironrdp_pdu::rdp::capability_sets::CapabilitySet;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};

use super::{le_u16, le_u32};

/// Fast-path PDUs carry no MCS channel; the archive records them under
/// this channel number (MCS channel ids start at 1001).
pub const FASTPATH_CHANNEL: u32 = 0;

/// Largest desktop side taken from a PDU or a header (guards hostile sizes).
pub const MAX_SIDE: u32 = 8192;

/// Share Control pduType values (MS-RDPBCGR 2.2.8.1.1.1.1).
pub const PDUTYPE_DEMAND_ACTIVE: u16 = 0x0001;
pub const PDUTYPE_DEACTIVATE_ALL: u16 = 0x0006;
pub const PDUTYPE_DATA: u16 = 0x0007;
/// pduType2 of a slow-path Input Event PDU (MS-RDPBCGR 2.2.8.1.1.3).
const PDUTYPE2_INPUT: u8 = 0x1C;

/// The desktop size a Server Demand Active announces (its bitmap
/// capability), clamped to [`MAX_SIDE`]; `None` for any other PDU or a
/// zero size. `data` is a slow-path PDU from the Share Control header on.
pub fn demand_active_size(data: &[u8]) -> Option<(u16, u16)> {
    // pduType (low 4 bits of bytes 2..4) 1 = Demand Active: a cheap test
    // before decoding, as prescans look at every slow-path PDU.
    if data.len() < 4 || data[2] & 0x0f != 0x01 {
        return None;
    }
    let header = decode::<ShareControlHeader>(data).ok()?;
    let ShareControlPdu::ServerDemandActive(demand) = header.share_control_pdu else {
        return None;
    };
    let max = MAX_SIDE as u16;
    demand
        .pdu
        .capability_sets
        .iter()
        .find_map(|c| match c {
            CapabilitySet::Bitmap(b) => Some((b.desktop_width.min(max), b.desktop_height.min(max))),
            _ => None,
        })
        .filter(|&(w, h)| w > 0 && h > 0)
}

/// Activation from a target I/O channel PDU: `Some(Some(share id))` for a
/// Demand Active, `Some(None)` for Deactivate All, `None` for anything else.
pub fn share_transition(user_data: &[u8]) -> Option<Option<u32>> {
    let pdu_type = le_u16(user_data, 2).map(|t| t & 0x000F)?;
    match pdu_type {
        PDUTYPE_DEMAND_ACTIVE => Some(Some(le_u32(user_data, 6)?)),
        PDUTYPE_DEACTIVATE_ALL => Some(None),
        _ => None,
    }
}

/// Whether a client I/O channel PDU is slow-path input (clients without
/// fast-path input send keyboard and mouse this way).
pub fn is_slow_path_input(user_data: &[u8]) -> bool {
    le_u16(user_data, 2).map(|t| t & 0x000F) == Some(PDUTYPE_DATA)
        && user_data.get(14) == Some(&PDUTYPE2_INPUT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rdp::testing::{demand_active, fast_path_bitmap};

    #[test]
    fn demand_active_size_reads_only_demand_actives() {
        assert_eq!(
            demand_active_size(&demand_active(1280, 720)),
            Some((1280, 720))
        );
        assert_eq!(demand_active_size(&[0, 0, 0x17, 0, 0, 0]), None);
        assert_eq!(demand_active_size(&[0x11]), None);
        assert_eq!(demand_active_size(&fast_path_bitmap(0, 0, &[0; 4])), None);
    }

    #[test]
    fn share_id_follows_demand_active_and_deactivate_all() {
        // totalLength, pduType=0x11 (Demand Active), pduSource, shareId.
        let demand = [0x20, 0, 0x11, 0, 0xea, 0x03, 0x78, 0x56, 0x34, 0x12, 0, 0];
        assert_eq!(share_transition(&demand), Some(Some(0x1234_5678)));
        let deactivate = [0x10, 0, 0x16, 0, 0xea, 0x03, 0, 0, 0, 0];
        assert_eq!(share_transition(&deactivate), Some(None));
        let data = [0x10, 0, 0x17, 0, 0xea, 0x03, 0, 0, 0, 0];
        assert_eq!(share_transition(&data), None);
        // A truncated Demand Active is not an activation.
        assert_eq!(share_transition(&demand[..8]), None);
    }

    #[test]
    fn slow_path_input_is_recognised() {
        let mut input = vec![0u8; 20];
        input[2] = 0x17;
        input[14] = 0x1C;
        assert!(is_slow_path_input(&input));
        input[14] = 0x1F; // synchronize
        assert!(!is_slow_path_input(&input));
        assert!(!is_slow_path_input(&input[..10]));
    }
}
