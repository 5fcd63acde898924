//! What a recorded output PDU carries, read with ironrdp-pdu: the bitmap
//! updates of a fast-path PDU, the graphics update of a slow-path one.
//! Used by the renderer to draw and by the look-back ([`super::overdraw`])
//! to tell what a PDU would draw without decoding its bitmaps.

use ironrdp_core::{ReadCursor, decode};
use ironrdp_pdu::bitmap::BitmapUpdateData;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::slow_path;

/// The bitmap updates of a fast-path PDU made only of whole
/// (unfragmented, not bulk-compressed) bitmap updates; `None` for any
/// other PDU.
pub(super) fn bitmap_updates(data: &[u8]) -> Option<Vec<BitmapUpdateData<'_>>> {
    use ironrdp_pdu::fast_path::{
        FastPathHeader, FastPathUpdate, FastPathUpdatePdu, Fragmentation, UpdateCode,
    };
    let mut src = ReadCursor::new(data);
    decode_cursor_any::<FastPathHeader>(&mut src)?;
    let mut updates = Vec::new();
    while !src.is_empty() {
        let pdu = decode_cursor_any::<FastPathUpdatePdu<'_>>(&mut src)?;
        if pdu.fragmentation != Fragmentation::Single
            || pdu.update_code != UpdateCode::Bitmap
            || pdu.compression_flags.is_some_and(|f| !f.is_empty())
        {
            return None;
        }
        let Ok(FastPathUpdate::Bitmap(update)) =
            FastPathUpdate::decode_with_code(pdu.data, UpdateCode::Bitmap)
        else {
            return None;
        };
        updates.push(update);
    }
    Some(updates)
}

/// Whether ironrdp may keep part of a fragmented update after this PDU:
/// its last update is a first or middle fragment, or it could not be
/// read to its end.
pub(super) fn may_leave_fragment(data: &[u8]) -> bool {
    use ironrdp_pdu::fast_path::{FastPathHeader, FastPathUpdatePdu, Fragmentation};
    let mut src = ReadCursor::new(data);
    if decode_cursor_any::<FastPathHeader>(&mut src).is_none() {
        return true;
    }
    let mut last = Fragmentation::Single;
    while !src.is_empty() {
        let Some(pdu) = decode_cursor_any::<FastPathUpdatePdu<'_>>(&mut src) else {
            return true;
        };
        last = pdu.fragmentation;
    }
    matches!(last, Fragmentation::First | Fragmentation::Next)
}

/// The graphics update a slow-path PDU carries, if it is a Share Data
/// Update PDU (virtual channel traffic and the like are not drawing).
pub(super) fn slow_path_update(data: &[u8]) -> Option<Vec<u8>> {
    let header = decode::<ShareControlHeader>(data).ok()?;
    let ShareControlPdu::Data(sd) = header.share_control_pdu else {
        return None;
    };
    let ShareDataPdu::Update(update) = sd.share_data_pdu else {
        return None;
    };
    Some(update)
}

/// The bitmap update in a slow-path graphics update; `None` for the other
/// kinds (orders, palette, synchronize), an error when it cannot be read.
pub(super) fn slow_path_bitmap(update: &[u8]) -> Result<Option<BitmapUpdateData<'_>>, ()> {
    let mut src = ReadCursor::new(update);
    match slow_path::read_graphics_update_type(&mut src) {
        Ok(slow_path::GraphicsUpdateType::Bitmap) => slow_path::decode_slow_path_bitmap(&mut src)
            .map(Some)
            .map_err(|_| ()),
        Ok(_) => Ok(None),
        Err(_) => Err(()),
    }
}

/// [`ironrdp_core::decode_cursor`] with the error dropped.
fn decode_cursor_any<'a, T: ironrdp_core::Decode<'a>>(src: &mut ReadCursor<'a>) -> Option<T> {
    ironrdp_core::decode_cursor::<T>(src).ok()
}
