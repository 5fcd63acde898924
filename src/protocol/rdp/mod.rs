//! RDP as both the relay and the replay read it: PDU classification
//! ([`pdu`]), client input decoding ([`input`]) and keyboard layouts
//! ([`keyboard`]).

pub mod input;
pub mod keyboard;
pub mod pdu;

pub use pdu::FASTPATH_CHANNEL;

/// Little-endian u16 at `at`, `None` past the end (wire parsing without
/// indexing).
pub fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_le_bytes(pair))
}

/// Little-endian u32 at `at`, `None` past the end.
pub fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let quad: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(quad))
}

/// PDUs as tests build them (a recorder or a target would send them).
#[cfg(test)]
pub(crate) mod testing {
    use ironrdp_pdu::rdp::capability_sets::CapabilitySet;
    use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};

    /// A slow-path Server Demand Active announcing a `w` x `h` desktop.
    pub(crate) fn demand_active(w: u16, h: u16) -> Vec<u8> {
        use ironrdp_pdu::rdp::capability_sets::{
            Bitmap, BitmapDrawingFlags, DemandActive, ServerDemandActive,
        };
        let header = ShareControlHeader {
            share_id: 0x1_03ea,
            pdu_source: 1002,
            share_control_pdu: ShareControlPdu::ServerDemandActive(ServerDemandActive {
                pdu: DemandActive {
                    source_descriptor: "RDP".into(),
                    capability_sets: vec![
                        CapabilitySet::Font(vec![1, 0, 0, 0]),
                        CapabilitySet::Bitmap(Bitmap {
                            pref_bits_per_pix: 32,
                            desktop_width: w,
                            desktop_height: h,
                            desktop_resize_flag: true,
                            drawing_flags: BitmapDrawingFlags::empty(),
                        }),
                    ],
                },
            }),
        };
        ironrdp_core::encode_vec(&header).expect("encode")
    }

    /// A fast-path output PDU holding one uncompressed 32 bpp bitmap update.
    pub(crate) fn fast_path_bitmap(left: u16, top: u16, bgra: &[u8]) -> Vec<u8> {
        fast_path_update(&bitmap_row_update(left, top, bgra))
    }

    /// A slow-path Update PDU (I/O channel) holding the same bitmap update
    /// as [`fast_path_bitmap`].
    pub(crate) fn slow_path_bitmap(left: u16, top: u16, bgra: &[u8]) -> Vec<u8> {
        slow_path_update(&bitmap_row_update(left, top, bgra))
    }

    /// An encoded bitmap update (TS_UPDATE_BITMAP_DATA) of one row of
    /// uncompressed 32 bpp pixels.
    fn bitmap_row_update(left: u16, top: u16, bgra: &[u8]) -> Vec<u8> {
        use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
        use ironrdp_pdu::geometry::InclusiveRectangle;
        let w = u16::try_from(bgra.len() / 4).expect("small");
        let update = BitmapUpdateData {
            rectangles: vec![BitmapData {
                rectangle: InclusiveRectangle {
                    left,
                    top,
                    right: left + w - 1,
                    bottom: top,
                },
                width: w,
                height: 1,
                bits_per_pixel: 32,
                compression_flags: Compression::empty(),
                compressed_data_header: None,
                bitmap_data: bgra,
            }],
        };
        ironrdp_core::encode_vec(&update).expect("encode")
    }

    /// A fast-path output PDU of one encoded bitmap update: single
    /// fragment, no compression.
    pub(crate) fn fast_path_update(body: &[u8]) -> Vec<u8> {
        let mut upd = vec![0x01];
        upd.extend_from_slice(&u16::try_from(body.len()).expect("small").to_le_bytes());
        upd.extend_from_slice(body);
        let total = upd.len() + 3;
        let mut pdu = vec![0x00, 0x80 | ((total >> 8) as u8), total as u8];
        pdu.extend_from_slice(&upd);
        pdu
    }

    /// A slow-path Update PDU of one encoded graphics update: Share Control
    /// Header (length, data PDU of version 1, source), share id, Share Data
    /// Header (low priority, Update, not compressed), the update. Written
    /// out here: ironrdp does not encode Update PDUs.
    pub(crate) fn slow_path_update(body: &[u8]) -> Vec<u8> {
        let total = u16::try_from(6 + 4 + 8 + body.len()).expect("small");
        let mut pdu = Vec::new();
        for v in [total, 0x0017, 1002] {
            pdu.extend_from_slice(&v.to_le_bytes());
        }
        pdu.extend_from_slice(&1u32.to_le_bytes());
        pdu.extend_from_slice(&[0, 1]);
        pdu.extend_from_slice(&u16::try_from(body.len()).expect("small").to_le_bytes());
        pdu.extend_from_slice(&[0x02, 0, 0, 0]);
        pdu.extend_from_slice(body);
        pdu
    }
}
