//! A small PDF writer for reports that officials file: A4 pages of headings,
//! lines and tables in one Japanese TrueType/OpenType font taken from the
//! system (a Debian font package; its path is `[reports] font` in
//! sekisho.toml). No font is shipped with sekisho.
//!
//! Text is written as glyph ids (Identity-H, CID = glyph id) so any
//! character the font holds prints; a ToUnicode map makes the text
//! searchable and extractable (`pdftotext`). Only the glyphs used are kept
//! in the embedded font (subset, glyph ids unchanged).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// Why a PDF could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error(
        "the report font {path} is missing (install fonts-ipaexfont-gothic, or set `[reports] font` in sekisho.toml to a Japanese TrueType/OpenType font)"
    )]
    FontMissing { path: PathBuf },
    #[error("reading the report font {path}: {source}")]
    FontRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the report font {path} is not a usable TrueType/OpenType font: {why}")]
    FontUnusable { path: PathBuf, why: String },
    #[error("embedding the report font: {0}")]
    Embed(String),
}

/// A font loaded from disk, checked to be parseable.
pub struct ReportFont {
    path: PathBuf,
    data: Vec<u8>,
}

impl ReportFont {
    pub fn load(path: &Path) -> Result<ReportFont, PdfError> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PdfError::FontMissing { path: path.into() });
            }
            Err(source) => {
                return Err(PdfError::FontRead {
                    path: path.into(),
                    source,
                });
            }
        };
        let face = ttf_parser::Face::parse(&data, 0).map_err(|e| PdfError::FontUnusable {
            path: path.into(),
            why: e.to_string(),
        })?;
        if face.glyph_index('あ').is_none() {
            return Err(PdfError::FontUnusable {
                path: path.into(),
                why: "it has no Japanese characters".into(),
            });
        }
        Ok(ReportFont {
            path: path.into(),
            data,
        })
    }

    fn face(&self) -> Result<ttf_parser::Face<'_>, PdfError> {
        ttf_parser::Face::parse(&self.data, 0).map_err(|e| PdfError::FontUnusable {
            path: self.path.clone(),
            why: e.to_string(),
        })
    }
}

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 40.0;
const BODY: f32 = 9.0;

/// A document being laid out: text flows down A4 pages.
pub struct Document<'f> {
    font: &'f ReportFont,
    face: ttf_parser::Face<'f>,
    units: f32,
    title: String,
    pages: Vec<Content>,
    y: f32,
    /// Glyph id → the character it shows (for ToUnicode and the subset).
    used: BTreeMap<u16, char>,
}

impl<'f> Document<'f> {
    pub fn new(font: &'f ReportFont, title: &str) -> Result<Document<'f>, PdfError> {
        let face = font.face()?;
        let units = f32::from(face.units_per_em());
        let mut d = Document {
            font,
            face,
            units,
            title: title.to_string(),
            pages: Vec::new(),
            y: 0.0,
            used: BTreeMap::new(),
        };
        d.new_page();
        Ok(d)
    }

    fn new_page(&mut self) {
        self.pages.push(Content::new());
        self.y = PAGE_H - MARGIN;
    }

    fn room(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.new_page();
        }
    }

    /// The glyph of `c` (unknown characters print as the font's .notdef
    /// box rather than failing the whole report).
    fn glyph(&mut self, c: char) -> u16 {
        let c = if c.is_control() { ' ' } else { c };
        let g = self.face.glyph_index(c).map(|g| g.0).unwrap_or(0);
        if g != 0 {
            self.used.entry(g).or_insert(c);
        }
        g
    }

    fn advance(&self, g: u16, size: f32) -> f32 {
        let a = self
            .face
            .glyph_hor_advance(ttf_parser::GlyphId(g))
            .unwrap_or(0);
        f32::from(a) / self.units * size
    }

    /// Splits `text` into lines no wider than `width` (by character: Japanese
    /// has no spaces to break at).
    fn wrap(&mut self, text: &str, size: f32, width: f32) -> Vec<Vec<u16>> {
        let mut lines = Vec::new();
        for para in text.split('\n') {
            let mut line = Vec::new();
            let mut w = 0.0;
            for c in para.chars() {
                let g = self.glyph(c);
                let a = self.advance(g, size);
                if w + a > width && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    w = 0.0;
                }
                line.push(g);
                w += a;
            }
            lines.push(line);
        }
        lines
    }

    fn show(&mut self, x: f32, y: f32, size: f32, glyphs: &[u16]) {
        let bytes: Vec<u8> = glyphs.iter().flat_map(|g| g.to_be_bytes()).collect();
        let Some(page) = self.pages.last_mut() else {
            return;
        };
        page.begin_text()
            .set_font(Name(b"F1"), size)
            .next_line(x, y)
            .show(Str(&bytes))
            .end_text();
    }

    /// A heading line.
    pub fn heading(&mut self, text: &str, size: f32) {
        let width = PAGE_W - 2.0 * MARGIN;
        for line in self.wrap(text, size, width) {
            self.room(size * 1.5);
            self.y -= size * 1.3;
            let y = self.y;
            self.show(MARGIN, y, size, &line);
        }
        self.y -= size * 0.4;
    }

    /// A paragraph of body text.
    pub fn text(&mut self, text: &str) {
        self.heading(text, BODY);
    }

    /// Vertical space.
    pub fn gap(&mut self) {
        self.y -= BODY;
    }

    /// Label / value pairs, as on a form.
    pub fn fields(&mut self, rows: &[(&str, String)]) {
        self.table(
            &[0.22, 0.78],
            &[],
            rows.iter().map(|(k, v)| vec![k.to_string(), v.clone()]),
        );
    }

    /// A table: `widths` are fractions of the text width; `header` is
    /// repeated on each new page; cells wrap.
    pub fn table(
        &mut self,
        widths: &[f32],
        header: &[&str],
        rows: impl IntoIterator<Item = Vec<String>>,
    ) {
        let total = PAGE_W - 2.0 * MARGIN;
        let size = BODY;
        let lead = size * 1.35;
        let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
        let mut pending_header = !header.is_empty();
        for row in rows {
            // Lay out the row (and the header if it must be drawn first).
            let cells = |d: &mut Self, row: &[String]| -> Vec<Vec<Vec<u16>>> {
                row.iter()
                    .zip(widths)
                    .map(|(t, w)| d.wrap(t, size, w * total - 4.0))
                    .collect()
            };
            let laid = cells(self, &row);
            let height = laid.iter().map(Vec::len).max().unwrap_or(1) as f32 * lead + 3.0;
            if self.y - height < MARGIN {
                self.new_page();
                pending_header = !header.is_empty();
            }
            if pending_header {
                let h = cells(self, &header);
                let hh = h.iter().map(Vec::len).max().unwrap_or(1) as f32 * lead + 3.0;
                self.draw_row(widths, &h, hh, lead, size, true);
                pending_header = false;
            }
            self.room(height);
            self.draw_row(widths, &laid, height, lead, size, false);
        }
        self.y -= size * 0.6;
    }

    fn draw_row(
        &mut self,
        widths: &[f32],
        cells: &[Vec<Vec<u16>>],
        height: f32,
        lead: f32,
        size: f32,
        shaded: bool,
    ) {
        let total = PAGE_W - 2.0 * MARGIN;
        let top = self.y;
        if let Some(page) = self.pages.last_mut() {
            if shaded {
                page.set_fill_gray(0.88)
                    .rect(MARGIN, top - height, total, height)
                    .fill_nonzero()
                    .set_fill_gray(0.0);
            }
            page.set_line_width(0.4)
                .rect(MARGIN, top - height, total, height)
                .stroke();
            let mut x = MARGIN;
            for w in widths.iter().take(widths.len().saturating_sub(1)) {
                x += w * total;
                page.move_to(x, top).line_to(x, top - height).stroke();
            }
        }
        let mut x = MARGIN;
        for (lines, w) in cells.iter().zip(widths) {
            let mut y = top - lead + 2.0;
            for line in lines {
                self.show(x + 2.0, y, size, line);
                y -= lead;
            }
            x += w * total;
        }
        self.y = top - height;
    }

    /// The finished file.
    pub fn finish(mut self) -> Result<Vec<u8>, PdfError> {
        // Page numbers, at the foot of each page.
        let n = self.pages.len();
        for i in 0..n {
            let label = format!("{} — {} / {}", self.title, i + 1, n);
            let glyphs: Vec<u16> = label.chars().map(|c| self.glyph(c)).collect();
            let bytes: Vec<u8> = glyphs.iter().flat_map(|g| g.to_be_bytes()).collect();
            if let Some(page) = self.pages.get_mut(i) {
                page.begin_text()
                    .set_font(Name(b"F1"), 7.0)
                    .next_line(MARGIN, MARGIN / 2.0)
                    .show(Str(&bytes))
                    .end_text();
            }
        }

        let mut alloc = Ref::new(1);
        let mut next = || alloc.bump();
        let catalog = next();
        let tree = next();
        let info = next();
        let font = next();
        let cid = next();
        let descriptor = next();
        let file = next();
        let cmap = next();
        let page_ids: Vec<(Ref, Ref)> = (0..n).map(|_| (next(), next())).collect();

        let mut pdf = Pdf::new();
        pdf.catalog(catalog).pages(tree);
        pdf.pages(tree)
            .kids(page_ids.iter().map(|(p, _)| *p))
            .count(i32::try_from(n).unwrap_or(i32::MAX));
        pdf.document_info(info)
            .title(TextStr(&self.title))
            .producer(TextStr("sekisho"));
        for ((page, content), c) in page_ids.iter().zip(self.pages.drain(..)) {
            let mut p = pdf.page(*page);
            p.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
                .parent(tree)
                .contents(*content);
            p.resources().fonts().pair(Name(b"F1"), font);
            p.finish();
            let data = deflate(&c.finish().into_vec())?;
            pdf.stream(*content, &data).filter(Filter::FlateDecode);
        }

        // The font: Type0 over a CIDFontType2, CID = glyph id.
        let base = Name(b"SKSHOA+ReportFont");
        let info_sys = SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        };
        pdf.type0_font(font)
            .base_font(base)
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(cid)
            .to_unicode(cmap);
        let mut c = pdf.cid_font(cid);
        c.subtype(CidFontType::Type2)
            .base_font(base)
            .system_info(info_sys)
            .font_descriptor(descriptor)
            .default_width(1000.0)
            .cid_to_gid_map_predefined(Name(b"Identity"));
        {
            let mut w = c.widths();
            for g in self.used.keys() {
                let a = self
                    .face
                    .glyph_hor_advance(ttf_parser::GlyphId(*g))
                    .unwrap_or(0);
                w.consecutive(*g, [f32::from(a) / self.units * 1000.0]);
            }
        }
        c.finish();
        let s = 1000.0 / self.units;
        let bbox = self.face.global_bounding_box();
        pdf.font_descriptor(descriptor)
            .name(base)
            .flags(FontFlags::SYMBOLIC)
            .bbox(Rect::new(
                f32::from(bbox.x_min) * s,
                f32::from(bbox.y_min) * s,
                f32::from(bbox.x_max) * s,
                f32::from(bbox.y_max) * s,
            ))
            .italic_angle(0.0)
            .ascent(f32::from(self.face.ascender()) * s)
            .descent(f32::from(self.face.descender()) * s)
            .cap_height(f32::from(self.face.capital_height().unwrap_or(700)) * s)
            .stem_v(80.0)
            .font_file2(file);
        let mut glyphs: Vec<u16> = self.used.keys().copied().collect();
        glyphs.insert(0, 0);
        let subset = subsetter::subset(&self.font.data, 0, subsetter::Profile::pdf(&glyphs))
            .map_err(|e| PdfError::Embed(format!("{e:?}")))?;
        let data = deflate(&subset)?;
        pdf.stream(file, &data).filter(Filter::FlateDecode);

        let mut map = pdf_writer::types::UnicodeCmap::new(Name(b"Custom"), info_sys);
        for (g, ch) in &self.used {
            map.pair(*g, *ch);
        }
        pdf.cmap(cmap, &map.finish());
        Ok(pdf.finish())
    }
}

fn deflate(data: &[u8]) -> Result<Vec<u8>, PdfError> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data)
        .and_then(|()| e.finish())
        .map_err(|e| PdfError::Embed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_font_names_its_path_and_the_package() {
        let e = ReportFont::load(Path::new("/nonexistent/ipaexg.ttf"))
            .err()
            .expect("no font there");
        assert!(matches!(e, PdfError::FontMissing { .. }));
        let m = e.to_string();
        assert!(
            m.contains("/nonexistent/ipaexg.ttf") && m.contains("fonts-ipaexfont-gothic"),
            "{m}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_font_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ttf");
        std::fs::write(&p, b"not a font").unwrap();
        assert!(matches!(
            ReportFont::load(&p),
            Err(PdfError::FontUnusable { .. })
        ));
    }

    #[test]
    fn text_is_embedded_as_a_subset_with_a_unicode_map() {
        let path = Path::new(crate::config::DEFAULT_REPORT_FONT);
        if !path.exists() {
            // The font comes from .ci/install-peers (fonts-ipaexfont-gothic).
            panic!("{} is missing: run .ci/install-peers", path.display());
        }
        let font = ReportFont::load(path).unwrap();
        let mut d = Document::new(&font, "試験").unwrap();
        d.heading("月次利用報告", 16.0);
        d.table(
            &[0.5, 0.5],
            &["項目", "件数"],
            [vec!["申請".into(), "12".into()]],
        );
        let pdf = d.finish().unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        // The whole font is ~6 MB; the subset of a few glyphs is far smaller.
        assert!(pdf.len() < 400_000, "{} bytes", pdf.len());
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/ToUnicode"));
        assert!(text.contains("/FontFile2"));
        assert!(text.contains("/Identity-H"));
    }
}
