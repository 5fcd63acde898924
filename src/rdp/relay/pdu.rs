//! The relay's pure part, no I/O: MCS id translation ([`ChannelMap`]),
//! which target PDUs are withheld from the client, which client PDUs are
//! slow-path input, DVC Create Requests and their refusal, the per-session
//! DVC gate, and the share state followed from Demand Active /
//! Deactivate All.

use std::collections::HashMap;

use crate::protocol::rdp::pdu::{PDUTYPE_DATA, demand_active_size, share_transition};

/// MCS id translation between the client's view and the target's.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelMap {
    /// front id → back id for every forwarded channel (I/O, user, statics).
    pub(super) to_back: HashMap<u16, u16>,
    pub(super) to_front: HashMap<u16, u16>,
    /// front ids of refused static channels, with their names.
    pub(super) refused: HashMap<u16, String>,
    pub(super) front_user: u16,
    pub(super) back_user: u16,
    pub(super) front_io: u16,
    pub(super) back_io: u16,
    /// back id of drdynvc, when forwarded.
    pub(super) back_drdynvc: Option<u16>,
    /// ids whose slow-path PDUs are recorded (I/O and user channel), back ids.
    pub(super) back_recorded: Vec<u16>,
}

impl ChannelMap {
    pub(crate) fn new(front_user: u16, back_user: u16, front_io: u16, back_io: u16) -> Self {
        let mut map = Self {
            front_user,
            back_user,
            front_io,
            back_io,
            back_recorded: vec![back_io, back_user],
            ..Self::default()
        };
        map.link(front_user, back_user);
        map.link(front_io, back_io);
        map
    }

    pub(crate) fn link(&mut self, front: u16, back: u16) {
        self.to_back.insert(front, back);
        self.to_front.insert(back, front);
    }

    pub(crate) fn link_named(&mut self, name: &str, front: u16, back: u16) {
        self.link(front, back);
        if name.eq_ignore_ascii_case("drdynvc") {
            self.back_drdynvc = Some(back);
        }
    }

    pub(crate) fn refuse(&mut self, front: u16, name: &str) {
        self.refused.insert(front, name.to_owned());
    }

    pub(crate) fn client_to_target(&self, front: u16) -> Option<u16> {
        self.to_back.get(&front).copied()
    }

    pub(crate) fn target_to_client(&self, back: u16) -> Option<u16> {
        self.to_front.get(&back).copied()
    }
}

/// The share control header's pduType for Server Redirection (MS-RDPBCGR 2.2.13.3.1).
const PDUTYPE_SERVER_REDIRECT: u16 = 0x000A;
/// pduType2 of the Save Session Info PDU, which carries auto-reconnect cookies.
const PDUTYPE2_SAVE_SESSION_INFO: u8 = 0x26;

/// Whether a server slow-path PDU on the I/O channel must not reach the
/// client: server redirection (it would send the client around the
/// gateway) and Save Session Info (auto-reconnect cookies).
pub(crate) fn is_withheld_server_pdu(user_data: &[u8]) -> Option<&'static str> {
    let pdu_type = crate::rdp::le_u16(user_data, 2).map(|t| t & 0x000F)?;
    if pdu_type == PDUTYPE_SERVER_REDIRECT {
        return Some("server redirection");
    }
    if pdu_type == PDUTYPE_DATA && user_data.get(14) == Some(&PDUTYPE2_SAVE_SESSION_INFO) {
        return Some("save session info (auto-reconnect)");
    }
    None
}

/// pduType2 of the Font Map PDU, the server's last finalization PDU.
const PDUTYPE2_FONTMAP: u8 = 0x28;

/// Whether a server slow-path PDU is the Font Map: the client is connected
/// and handles any data PDU from here on.
pub(crate) fn is_font_map(user_data: &[u8]) -> bool {
    let pdu_type = crate::rdp::le_u16(user_data, 2).map(|t| t & 0x000F);
    pdu_type == Some(PDUTYPE_DATA) && user_data.get(14) == Some(&PDUTYPE2_FONTMAP)
}

const CHANNEL_FLAG_FIRST: u32 = 0x01;
const CHANNEL_FLAG_LAST: u32 = 0x02;
const DVC_CMD_CREATE: u8 = 0x01;

/// A DVC Create Request found in one drdynvc chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DvcCreate {
    pub cb_id: u8,
    pub channel_id: u32,
    pub name: String,
}

/// Parse a server→client drdynvc static-channel chunk (channel PDU header
/// + DVC PDU) if it is a whole DVC Create Request. Anything else is `None`.
pub(crate) fn parse_dvc_create(chunk: &[u8]) -> Option<DvcCreate> {
    let flags = u32::from_le_bytes(chunk.get(4..8)?.try_into().ok()?);
    if flags & CHANNEL_FLAG_FIRST == 0 {
        return None;
    }
    let body = chunk.get(8..)?;
    let header = *body.first()?;
    if header >> 4 != DVC_CMD_CREATE {
        return None;
    }
    let cb_id = header & 0x03;
    let id_len = match cb_id {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => return None,
    };
    let id_bytes = body.get(1..1 + id_len)?;
    let mut id = [0u8; 4];
    id.get_mut(..id_len)?.copy_from_slice(id_bytes);
    let channel_id = u32::from_le_bytes(id);
    let name_bytes = body.get(1 + id_len..)?;
    let end = name_bytes
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(name_bytes.len());
    let name = String::from_utf8_lossy(name_bytes.get(..end)?).into_owned();
    Some(DvcCreate {
        cb_id,
        channel_id,
        name,
    })
}

/// A DVC Create Response refusing the channel, wrapped in a single-chunk
/// channel PDU header, as the client would send it.
pub(crate) fn dvc_refusal(create: &DvcCreate) -> Vec<u8> {
    // E_ACCESSDENIED-like failure status; any negative value refuses.
    const CREATION_FAILED: i32 = -2_147_024_891; // 0x80070005
    let mut dvc = vec![(DVC_CMD_CREATE << 4) | create.cb_id];
    let id = create.channel_id.to_le_bytes();
    let id_len = match create.cb_id {
        0 => 1,
        1 => 2,
        _ => 4,
    };
    dvc.extend_from_slice(id.get(..id_len).unwrap_or(&id));
    dvc.extend_from_slice(&CREATION_FAILED.to_le_bytes());
    let mut out = Vec::with_capacity(8 + dvc.len());
    out.extend_from_slice(&u32::try_from(dvc.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST).to_le_bytes());
    out.extend_from_slice(&dvc);
    out
}

/// Which dynamic channel traffic may pass inside `drdynvc`: only PDUs of
/// channels whose creation the gateway let through, plus the channel-less
/// control PDUs (capabilities, soft-sync). A message split into several
/// static-channel chunks is judged by its first chunk.
#[derive(Debug, Default)]
pub(crate) struct DvcGate {
    allowed: std::collections::HashSet<u32>,
    client_passing: bool,
    server_passing: bool,
}

const DVC_CMD_CLOSE: u8 = 0x04;

/// Channel id of a DVC PDU whose command carries one, `Ok(None)` for the
/// channel-less commands, `Err(())` for unknown commands or short input.
fn dvc_channel_id(dvc: &[u8]) -> Result<Option<u32>, ()> {
    let header = *dvc.first().ok_or(())?;
    let cmd = header >> 4;
    match cmd {
        // Create, Data First, Data, Close, Data First Compressed, Data Compressed.
        0x01 | 0x02 | 0x03 | 0x04 | 0x06 | 0x07 => {
            let id_len = match header & 0x03 {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => return Err(()),
            };
            let bytes = dvc.get(1..1 + id_len).ok_or(())?;
            let mut id = [0u8; 4];
            id.get_mut(..id_len).ok_or(())?.copy_from_slice(bytes);
            Ok(Some(u32::from_le_bytes(id)))
        }
        // Capabilities, Soft-Sync Request/Response.
        0x05 | 0x08 | 0x09 => Ok(None),
        _ => Err(()),
    }
}

impl DvcGate {
    pub(crate) fn allow(&mut self, channel_id: u32) {
        self.allowed.insert(channel_id);
    }

    fn judge(&mut self, chunk: &[u8], from_client: bool) -> bool {
        let Some(flags) = chunk
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
        else {
            return false;
        };
        let passing = if flags & CHANNEL_FLAG_FIRST == 0 {
            // Continuation: same fate as its first chunk.
            if from_client {
                self.client_passing
            } else {
                self.server_passing
            }
        } else {
            let body = chunk.get(8..).unwrap_or_default();
            match dvc_channel_id(body) {
                Ok(None) => true,
                Ok(Some(id)) => {
                    let ok = self.allowed.contains(&id);
                    if ok && body.first().map(|h| h >> 4) == Some(DVC_CMD_CLOSE) && !from_client {
                        self.allowed.remove(&id);
                    }
                    ok
                }
                Err(()) => false,
            }
        };
        if from_client {
            self.client_passing = passing;
        } else {
            self.server_passing = passing;
        }
        passing
    }

    /// Whether a client→target drdynvc chunk may pass.
    pub(crate) fn pass_from_client(&mut self, chunk: &[u8]) -> bool {
        self.judge(chunk, true)
    }

    /// Whether a target→client drdynvc chunk (not a Create Request) may pass.
    pub(crate) fn pass_from_target(&mut self, chunk: &[u8]) -> bool {
        self.judge(chunk, false)
    }
}

/// What the relay knows of the target's share: its id (`None` before the
/// first Demand Active and after Deactivate All) and the desktop size (the
/// client's at first; a resize brings a new Demand Active). Keyframes ask
/// for a redraw of all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShareState {
    pub share_id: Option<u32>,
    pub desktop: (u16, u16),
}

impl ShareState {
    pub(crate) fn new(width: u16, height: u16) -> Self {
        ShareState {
            share_id: None,
            desktop: (width, height),
        }
    }

    /// Follows one slow-path PDU from the target; returns the new share id
    /// when the PDU activated or deactivated the share.
    pub(crate) fn observe(&mut self, user_data: &[u8]) -> Option<Option<u32>> {
        let transition = share_transition(user_data)?;
        self.share_id = transition;
        if let Some(size) = demand_active_size(user_data) {
            self.desktop = size;
        }
        Some(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(dvc: &[u8], flags: u32) -> Vec<u8> {
        let mut v = (dvc.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(dvc);
        v
    }

    #[test]
    fn channel_map_translates_both_ways_and_knows_refusals() {
        let mut map = ChannelMap::new(1007, 1005, 1003, 1003);
        map.link_named("drdynvc", 1006, 1004);
        map.refuse(1004, "cliprdr");
        assert_eq!(map.client_to_target(1007), Some(1005));
        assert_eq!(map.client_to_target(1006), Some(1004));
        assert_eq!(map.client_to_target(1004), None);
        assert_eq!(map.target_to_client(1004), Some(1006));
        assert_eq!(map.target_to_client(1005), Some(1007));
        assert_eq!(map.back_drdynvc, Some(1004));
        assert_eq!(map.refused.get(&1004).map(String::as_str), Some("cliprdr"));
    }

    #[test]
    fn dvc_create_request_is_parsed_and_refused() {
        let mut dvc = vec![0x10, 7];
        dvc.extend_from_slice(b"URBDRC\0");
        let create = parse_dvc_create(&chunk(&dvc, 3));
        assert_eq!(
            create,
            Some(DvcCreate {
                cb_id: 0,
                channel_id: 7,
                name: "URBDRC".into()
            })
        );
        let Some(create) = create else { return };
        let refusal = dvc_refusal(&create);
        // header(8) + cmd + id(1) + status(4)
        assert_eq!(refusal.len(), 8 + 1 + 1 + 4);
        assert_eq!(refusal[8], 0x10);
        assert_eq!(refusal[9], 7);
        assert!(i32::from_le_bytes([refusal[10], refusal[11], refusal[12], refusal[13]]) < 0);
    }

    #[test]
    fn non_create_or_truncated_dvc_pdus_are_not_creates() {
        // Data PDU (cmd 3).
        assert_eq!(parse_dvc_create(&chunk(&[0x30, 1, 0xAA], 3)), None);
        // Continuation chunk.
        assert_eq!(parse_dvc_create(&chunk(&[0x10, 1, b'A', 0], 0)), None);
        // Truncated: 4-byte id missing.
        assert_eq!(parse_dvc_create(&chunk(&[0x12, 1], 3)), None);
        assert_eq!(parse_dvc_create(&[1, 2, 3]), None);
        // Two-byte id.
        let c = parse_dvc_create(&chunk(&[0x11, 0x34, 0x12, b'X', 0], 3));
        assert_eq!(
            c.map(|c| (c.channel_id, c.name)),
            Some((0x1234, "X".into()))
        );
    }

    #[test]
    fn dvc_gate_passes_only_opened_channels() {
        let mut gate = DvcGate::default();
        // Capabilities (cmd 5) pass before anything is open.
        assert!(gate.pass_from_target(&chunk(&[0x50, 0, 3, 0], 3)));
        assert!(gate.pass_from_client(&chunk(&[0x50, 0, 3, 0], 3)));
        // Data (cmd 3) on channel 9: not opened.
        assert!(!gate.pass_from_client(&chunk(&[0x30, 9, 1, 2], 3)));
        // A pre-emptive Create Response (cmd 1) for channel 9 is dropped too.
        assert!(!gate.pass_from_client(&chunk(&[0x10, 9, 0, 0, 0, 0], 3)));
        // Its continuation chunks follow the first chunk's fate.
        assert!(!gate.pass_from_client(&chunk(&[0xAA, 0xBB], 0)));
        gate.allow(7);
        assert!(gate.pass_from_client(&chunk(&[0x30, 7, 1, 2], 1)));
        assert!(gate.pass_from_client(&chunk(&[0xAA, 0xBB], 2)));
        // Two-byte id 7.
        assert!(gate.pass_from_target(&chunk(&[0x31, 7, 0, 9], 3)));
        // The target closes channel 7; afterwards its data is dropped.
        assert!(gate.pass_from_target(&chunk(&[0x40, 7], 3)));
        assert!(!gate.pass_from_target(&chunk(&[0x30, 7, 1], 3)));
        // Unknown commands and short chunks never pass.
        assert!(!gate.pass_from_client(&chunk(&[0xF0, 7], 3)));
        assert!(!gate.pass_from_client(&[1, 2, 3]));
        assert!(!gate.pass_from_client(&chunk(&[], 3)));
    }

    #[test]
    fn the_share_state_follows_the_desktop_size_for_keyframes() {
        let mut share = ShareState::new(800, 600);
        assert_eq!(share.share_id, None);
        // Fast-path-looking or data PDUs change nothing.
        assert_eq!(
            share.observe(&[0x10, 0, 0x17, 0, 0xea, 0x03, 0, 0, 0, 0]),
            None
        );
        // The client enlarged its window: the target reactivates at 1280x800.
        let demand = crate::protocol::rdp::testing::demand_active(1280, 800);
        assert_eq!(share.observe(&demand), Some(Some(0x1_03ea)));
        assert_eq!(share.desktop, (1280, 800));
        assert_eq!(share.share_id, Some(0x1_03ea));
        // Deactivate All: no share until the next Demand Active, size kept.
        let deactivate = [0x10, 0, 0x16, 0, 0xea, 0x03, 0, 0, 0, 0];
        assert_eq!(share.observe(&deactivate), Some(None));
        assert_eq!(
            share,
            ShareState {
                share_id: None,
                desktop: (1280, 800)
            }
        );
    }

    #[test]
    fn redirection_and_session_info_are_withheld() {
        // totalLength, pduType=0x1A (0x10 | 0xA), pduSource
        let redirect = [0, 0, 0x1A, 0, 0xEA, 0x03, 0, 0];
        assert_eq!(
            is_withheld_server_pdu(&redirect),
            Some("server redirection")
        );
        let mut data = vec![0u8; 18];
        data[2] = 0x17;
        data[14] = 0x26;
        assert!(is_withheld_server_pdu(&data).is_some());
        data[14] = 0x02; // update PDU
        assert_eq!(is_withheld_server_pdu(&data), None);
        assert_eq!(is_withheld_server_pdu(&[0]), None);
    }

    #[test]
    fn the_font_map_is_recognised_as_the_end_of_finalization() {
        use ironrdp_pdu::rdp::client_info::CompressionType;
        use ironrdp_pdu::rdp::finalization_messages::FontPdu;
        use ironrdp_pdu::rdp::headers::{
            CompressionFlags, ShareControlHeader, ShareControlPdu, ShareDataHeader, ShareDataPdu,
            StreamPriority,
        };
        let font_map = ShareControlHeader {
            share_id: 0x1_0000,
            pdu_source: 1002,
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: ShareDataPdu::FontMap(FontPdu::default()),
                stream_priority: StreamPriority::Undefined,
                compression_flags: CompressionFlags::empty(),
                compression_type: CompressionType::K8,
            }),
        };
        let bytes = ironrdp_core::encode_vec(&font_map).unwrap();
        assert!(is_font_map(&bytes));
        let mut other = bytes.clone();
        other[14] = 0x27; // Font List (client's)
        assert!(!is_font_map(&other));
        assert!(!is_font_map(&bytes[..10]));
    }
}
