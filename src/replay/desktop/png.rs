//! A desktop frame as PNG (`export --format png`).

use super::render::RenderError;

/// Encode RGBA pixels as PNG.
pub fn write_png(
    w: u32,
    h: u32,
    rgba: &[u8],
    out: &mut dyn std::io::Write,
) -> Result<(), RenderError> {
    let mut enc = png::Encoder::new(out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header()?;
    wr.write_image_data(rgba)?;
    wr.finish()?;
    Ok(())
}
