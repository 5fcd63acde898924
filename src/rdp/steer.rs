//! Steering the capability exchange so that every frame the target sends
//! can be decoded by the recorder: the client's Confirm Active is rewritten
//! on its way to the target to announce no drawing orders, no bitmap codecs
//! (RemoteFX, NSCodec) and no surface commands. What remains are bitmap
//! updates (raw, interleaved RLE or planar) and pointer updates, which
//! ironrdp-graphics decodes. Bulk compression is switched off separately,
//! in the Client Info PDU the gateway sends to the target.
//!
//! The colour depth is steered earlier, in the Client Core Data of the
//! MCS Connect Initial ([`at_most_24_bpp`]): a client that asks for 32 bpp
//! and can take 24 is given 24, the same colours in bitmaps xrdp encodes
//! far smaller for text.
//!
//! Bitmap compression itself stays as the client announced it: the Bitmap
//! set (re-encoded with `bitmapCompressionFlag` set, as the specification
//! requires), the General set's `extraFlags` (`NO_BITMAP_COMPRESSION_HDR`)
//! and the planar drawing flags (skip alpha, colour loss, subsampling: the
//! replayer decodes them all) pass unchanged. Nothing is added that the
//! client did not announce: the target's PDUs reach the client unchanged,
//! so the client must be able to read them. xrdp compresses every bitmap
//! (interleaved RLE up to 24 bpp, planar at 32 bpp) when its
//! `bitmap_compression` is on, whatever the client's flags.

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::gcc;
use ironrdp_pdu::rdp::capability_sets::{CapabilitySet, Order, OrderFlags, OrderSupportExFlags};
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};

/// share control pduType of a Confirm Active PDU (MS-RDPBCGR 2.2.8.1.1.1.1).
const PDUTYPE_CONFIRM_ACTIVE: u16 = 0x0003;

/// Restrict a client's capability sets to what the recorder decodes.
pub fn restrict_capabilities(caps: &mut Vec<CapabilitySet>) {
    let mut had_order = false;
    for cap in caps.iter_mut() {
        if let CapabilitySet::Order(_) = cap {
            had_order = true;
            // All support bits zero: the target may not send any order.
            *cap = CapabilitySet::Order(Order::new(
                OrderFlags::NEGOTIATE_ORDER_SUPPORT | OrderFlags::ZERO_BOUNDS_DELTAS_SUPPORT,
                OrderSupportExFlags::empty(),
                0,
                0,
            ));
        }
    }
    if !had_order {
        // The order set is mandatory; add one that supports nothing.
        caps.push(CapabilitySet::Order(Order::new(
            OrderFlags::NEGOTIATE_ORDER_SUPPORT | OrderFlags::ZERO_BOUNDS_DELTAS_SUPPORT,
            OrderSupportExFlags::empty(),
            0,
            0,
        )));
    }
    caps.retain(|cap| {
        !matches!(
            cap,
            CapabilitySet::BitmapCodecs(_)
                | CapabilitySet::SurfaceCommands(_)
                | CapabilitySet::FrameAcknowledge(_)
        )
    });
}

/// Where the client asks for a 32 bpp session and can take 24 bpp, ask
/// the target for 24 instead (in the Client Core Data of the MCS Connect
/// Initial); true if it did.
///
/// Why: both carry the same 24-bit colours (RDP's 32 bpp adds a byte no
/// desktop update uses), but at 32 bpp xrdp compresses every bitmap as
/// planar, at 24 bpp as interleaved RLE, whose foreground/background
/// runs suit text: measured on a screen of scrolling text, 5× fewer bytes
/// on the wire and an archive 1.8× smaller, with half the bastion's CPU
/// (README, RDP benchmark). The replayer decodes both exactly.
pub fn at_most_24_bpp(core: &mut gcc::ClientCoreOptionalData) -> bool {
    let want_32 = gcc::ClientEarlyCapabilityFlags::WANT_32_BPP_SESSION;
    let (Some(flags), Some(depths)) = (
        core.early_capability_flags.as_mut(),
        core.supported_color_depths.as_mut(),
    ) else {
        return false;
    };
    if !flags.contains(want_32) || !depths.contains(gcc::SupportedColorDepths::BPP24) {
        return false;
    }
    flags.remove(want_32);
    depths.remove(gcc::SupportedColorDepths::BPP32);
    core.high_color_depth = Some(gcc::HighColorDepth::Bpp24);
    true
}

/// If `user_data` (an I/O channel Send Data payload from the client) is a
/// Confirm Active PDU, the steered replacement; otherwise `None`.
/// A Confirm Active that cannot be decoded is an error: it must not reach
/// the target unsteered.
pub fn steer_confirm_active(user_data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let Some(pdu_type) = super::le_u16(user_data, 2).map(|t| t & 0x000F) else {
        return Ok(None);
    };
    if pdu_type != PDUTYPE_CONFIRM_ACTIVE {
        return Ok(None);
    }
    let mut header =
        decode::<ShareControlHeader>(user_data).map_err(|e| format!("Confirm Active: {e}"))?;
    let ShareControlPdu::ClientConfirmActive(confirm) = &mut header.share_control_pdu else {
        return Err("Confirm Active type with another body".into());
    };
    restrict_capabilities(&mut confirm.pdu.capability_sets);
    encode_vec(&header)
        .map(Some)
        .map_err(|e| format!("re-encoding Confirm Active: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_pdu::rdp::capability_sets::{
        BitmapCodecs, ClientConfirmActive, DemandActive, SurfaceCommands,
    };

    fn order_with_everything() -> CapabilitySet {
        use ironrdp_pdu::rdp::capability_sets::OrderSupportIndex;
        let mut order = Order::new(
            OrderFlags::NEGOTIATE_ORDER_SUPPORT,
            OrderSupportExFlags::empty(),
            230400,
            0,
        );
        order.set_support_flag(OrderSupportIndex::DstBlt, true);
        order.set_support_flag(OrderSupportIndex::MemBlt, true);
        CapabilitySet::Order(order)
    }

    #[test]
    fn orders_codecs_and_surface_commands_are_removed() {
        let mut caps = vec![
            order_with_everything(),
            CapabilitySet::BitmapCodecs(BitmapCodecs(Vec::new())),
            CapabilitySet::SurfaceCommands(SurfaceCommands {
                flags: ironrdp_pdu::rdp::capability_sets::CmdFlags::all(),
            }),
            CapabilitySet::Font(vec![1, 0, 0, 0]),
        ];
        restrict_capabilities(&mut caps);
        assert_eq!(caps.len(), 2, "{caps:?}");
        let Some(CapabilitySet::Order(order)) = caps.first_mut() else {
            panic!("order set gone: {caps:?}")
        };
        use ironrdp_pdu::rdp::capability_sets::OrderSupportIndex;
        assert!(!order.get_support_flag(OrderSupportIndex::DstBlt));
        assert!(!order.get_support_flag(OrderSupportIndex::MemBlt));
        assert!(matches!(caps.get(1), Some(CapabilitySet::Font(_))));
    }

    #[test]
    fn a_missing_order_set_is_added_empty() {
        let mut caps = vec![CapabilitySet::Font(vec![1, 0, 0, 0])];
        restrict_capabilities(&mut caps);
        assert!(caps.iter().any(|c| matches!(c, CapabilitySet::Order(_))));
    }

    #[test]
    fn confirm_active_is_rewritten_and_other_pdus_pass() {
        let header = ShareControlHeader {
            share_id: 0x1234,
            pdu_source: 1002,
            share_control_pdu: ShareControlPdu::ClientConfirmActive(ClientConfirmActive {
                originator_id: 0x03ea,
                pdu: DemandActive {
                    source_descriptor: "MSTSC".into(),
                    capability_sets: vec![
                        order_with_everything(),
                        CapabilitySet::BitmapCodecs(BitmapCodecs(Vec::new())),
                    ],
                },
            }),
        };
        let Ok(bytes) = encode_vec(&header) else {
            panic!("encode")
        };
        let steered = steer_confirm_active(&bytes);
        let Ok(Some(steered)) = steered else {
            panic!("not steered: {steered:?}")
        };
        let Ok(back) = decode::<ShareControlHeader>(&steered) else {
            panic!("decode")
        };
        assert_eq!(back.share_id, 0x1234);
        let ShareControlPdu::ClientConfirmActive(confirm) = back.share_control_pdu else {
            panic!("type changed")
        };
        assert!(
            !confirm
                .pdu
                .capability_sets
                .iter()
                .any(|c| matches!(c, CapabilitySet::BitmapCodecs(_)))
        );
        // A data PDU (type 7) and short input are left alone.
        assert_eq!(steer_confirm_active(&[0, 0, 0x17, 0, 0, 0]), Ok(None));
        assert_eq!(steer_confirm_active(&[1]), Ok(None));
        // A truncated Confirm Active is refused, not forwarded.
        assert!(steer_confirm_active(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn bitmap_compression_stays_as_the_client_announced_it() {
        use ironrdp_pdu::rdp::capability_sets::{
            Bitmap, BitmapDrawingFlags, General, GeneralExtraFlags, MajorPlatformType,
            MinorPlatformType,
        };
        let general = General {
            major_platform_type: MajorPlatformType::UNIX,
            minor_platform_type: MinorPlatformType::UNSPECIFIED,
            protocol_version: 0x0200,
            extra_flags: GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED
                | GeneralExtraFlags::NO_BITMAP_COMPRESSION_HDR
                | GeneralExtraFlags::LONG_CREDENTIALS_SUPPORTED,
            refresh_rect_support: true,
            suppress_output_support: true,
        };
        let bitmap = Bitmap {
            pref_bits_per_pix: 32,
            desktop_width: 1024,
            desktop_height: 768,
            desktop_resize_flag: true,
            drawing_flags: BitmapDrawingFlags::ALLOW_SKIP_ALPHA
                | BitmapDrawingFlags::ALLOW_DYNAMIC_COLOR_FIDELITY,
        };
        let header = ShareControlHeader {
            share_id: 1,
            pdu_source: 1002,
            share_control_pdu: ShareControlPdu::ClientConfirmActive(ClientConfirmActive {
                originator_id: 0x03ea,
                pdu: DemandActive {
                    source_descriptor: "FREERDP".into(),
                    capability_sets: vec![
                        CapabilitySet::General(general.clone()),
                        CapabilitySet::Bitmap(bitmap.clone()),
                        order_with_everything(),
                    ],
                },
            }),
        };
        let Ok(bytes) = encode_vec(&header) else {
            panic!("encode")
        };
        let Ok(Some(steered)) = steer_confirm_active(&bytes) else {
            panic!("not steered")
        };
        // Decoding checks bitmapCompressionFlag: ironrdp refuses it unset.
        let Ok(back) = decode::<ShareControlHeader>(&steered) else {
            panic!("the steered Confirm Active does not decode")
        };
        let ShareControlPdu::ClientConfirmActive(confirm) = back.share_control_pdu else {
            panic!("type changed")
        };
        let caps = &confirm.pdu.capability_sets;
        assert!(caps.contains(&CapabilitySet::General(general)), "{caps:?}");
        assert!(caps.contains(&CapabilitySet::Bitmap(bitmap)), "{caps:?}");
    }

    fn core_asking(
        flags: gcc::ClientEarlyCapabilityFlags,
        depths: gcc::SupportedColorDepths,
    ) -> gcc::ClientCoreOptionalData {
        gcc::ClientCoreOptionalData {
            high_color_depth: Some(gcc::HighColorDepth::Bpp24),
            supported_color_depths: Some(depths),
            early_capability_flags: Some(flags),
            ..Default::default()
        }
    }

    #[test]
    fn a_client_asking_for_32_bpp_is_given_24_where_it_can_take_it() {
        use gcc::{ClientEarlyCapabilityFlags as F, SupportedColorDepths as D};
        let all = D::BPP32 | D::BPP24 | D::BPP16 | D::BPP15;
        let mut core = core_asking(F::WANT_32_BPP_SESSION | F::SUPPORT_ERR_INFO_PDU, all);
        assert!(at_most_24_bpp(&mut core));
        assert_eq!(core.early_capability_flags, Some(F::SUPPORT_ERR_INFO_PDU));
        assert_eq!(
            core.supported_color_depths,
            Some(D::BPP24 | D::BPP16 | D::BPP15)
        );
        assert_eq!(core.high_color_depth, Some(gcc::HighColorDepth::Bpp24));
        // A client that wants 32 bpp with a lower high colour depth still
        // gets 24: the same colours as 32, never fewer.
        let mut core = core_asking(F::WANT_32_BPP_SESSION, all);
        core.high_color_depth = Some(gcc::HighColorDepth::Rgb565Bpp16);
        assert!(at_most_24_bpp(&mut core));
        assert_eq!(core.high_color_depth, Some(gcc::HighColorDepth::Bpp24));
    }

    #[test]
    fn other_colour_depths_pass_unchanged() {
        use gcc::{ClientEarlyCapabilityFlags as F, SupportedColorDepths as D};
        let cases = [
            // Not asking for 32 bpp: its own choice stands (16 bpp here).
            {
                let mut c = core_asking(F::SUPPORT_ERR_INFO_PDU, D::BPP32 | D::BPP24 | D::BPP16);
                c.high_color_depth = Some(gcc::HighColorDepth::Rgb565Bpp16);
                c
            },
            // Cannot take 24 bpp: left at 32.
            core_asking(F::WANT_32_BPP_SESSION, D::BPP32 | D::BPP16),
            // No supported depths or flags announced.
            gcc::ClientCoreOptionalData {
                early_capability_flags: Some(F::WANT_32_BPP_SESSION),
                ..Default::default()
            },
            gcc::ClientCoreOptionalData::default(),
        ];
        for before in cases {
            let mut core = before.clone();
            assert!(!at_most_24_bpp(&mut core), "{before:?}");
            assert_eq!(core, before);
        }
    }

    #[test]
    fn nothing_the_client_did_not_announce_is_added() {
        use ironrdp_pdu::rdp::capability_sets::{
            Bitmap, BitmapDrawingFlags, General, GeneralExtraFlags, MajorPlatformType,
            MinorPlatformType,
        };
        let mut caps = vec![
            CapabilitySet::General(General {
                major_platform_type: MajorPlatformType::WINDOWS,
                minor_platform_type: MinorPlatformType::UNSPECIFIED,
                protocol_version: 0x0200,
                extra_flags: GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED,
                refresh_rect_support: false,
                suppress_output_support: false,
            }),
            CapabilitySet::Bitmap(Bitmap {
                pref_bits_per_pix: 16,
                desktop_width: 800,
                desktop_height: 600,
                desktop_resize_flag: false,
                drawing_flags: BitmapDrawingFlags::empty(),
            }),
        ];
        let before = caps.clone();
        restrict_capabilities(&mut caps);
        // Only the (empty) order set is added; General and Bitmap unchanged.
        assert_eq!(caps.get(..2), Some(&before[..]));
        assert_eq!(caps.len(), 3);
    }
}
