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
/// Space between a cell's rule and its text.
const CELL_PAD: f32 = 2.0;

/// Smaller sizes a table may be set in when its columns do not fit.
const TABLE_SIZES: [f32; 2] = [8.0, 7.0];

/// What a table row is, for how it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// The shaded header.
    Header,
    /// A row of a table with a header: figures line up on the right.
    Figures,
    /// A row of label / value pairs.
    Plain,
}

/// One line of set text.
struct SetLine {
    text: String,
    glyphs: Vec<u16>,
    width: f32,
}

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

    /// The width of `c` at `size` (without marking its glyph as used).
    fn char_width(&self, c: char, size: f32) -> f32 {
        let c = if c.is_control() { ' ' } else { c };
        let g = self.face.glyph_index(c).map(|g| g.0).unwrap_or(0);
        self.advance(g, size)
    }

    /// `text` set in lines no wider than `width` (see [`break_lines`]), as
    /// glyphs with the width of each line.
    fn wrap(&mut self, text: &str, size: f32, width: f32) -> Vec<SetLine> {
        let lines = break_lines(text, width, |c| self.char_width(c, size));
        lines
            .iter()
            .map(|line| {
                let glyphs: Vec<u16> = line.chars().map(|c| self.glyph(c)).collect();
                let width = glyphs.iter().map(|g| self.advance(*g, size)).sum();
                SetLine {
                    text: line.clone(),
                    glyphs,
                    width,
                }
            })
            .collect()
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
            self.show(MARGIN, y, size, &line.glyphs);
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
            &[],
            rows.iter().map(|(k, v)| vec![k.to_string(), v.clone()]),
        );
    }

    /// A table: `header` is repeated on each new page; column widths
    /// follow the text in them (see [`column_widths`]); cells wrap only
    /// where a line may break (see [`break_lines`]).
    pub fn table(&mut self, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
        let total = PAGE_W - 2.0 * MARGIN;
        let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
        let rows: Vec<Vec<String>> = rows.into_iter().collect();
        let columns = rows
            .iter()
            .chain(std::iter::once(&header))
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        if columns == 0 {
            return;
        }
        if rows.is_empty() && !header.is_empty() {
            // An empty table says so rather than leaving its heading bare.
            self.text("（なし）");
            return;
        }
        let extents_at = |d: &Self, size: f32| -> Vec<Extent> {
            let mut extents = vec![Extent::default(); columns];
            for row in rows.iter().chain(std::iter::once(&header)) {
                for (e, t) in extents.iter_mut().zip(row) {
                    let x = text_extent(t, |c| d.char_width(c, size));
                    *e = e.max(x.padded(2.0 * CELL_PAD));
                }
            }
            extents
        };
        // A table with many columns is set smaller rather than squeezed
        // into one character a line.
        let mut size = BODY;
        let mut extents = extents_at(self, size);
        for smaller in TABLE_SIZES {
            if extents.iter().map(|e| e.comfortable).sum::<f32>() <= total {
                break;
            }
            size = smaller;
            extents = extents_at(self, size);
        }
        let lead = size * 1.35;
        let figures = !header.is_empty();
        let widths = column_widths(&extents, total);
        let lay = |d: &mut Self, row: &[String]| -> Vec<Vec<SetLine>> {
            widths
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let t = row.get(i).map(String::as_str).unwrap_or("");
                    d.wrap(t, size, w - 2.0 * CELL_PAD)
                })
                .collect()
        };
        let height_of = |cells: &[Vec<SetLine>]| {
            cells.iter().map(Vec::len).max().unwrap_or(1) as f32 * lead + 3.0
        };
        let mut pending_header = !header.is_empty();
        for row in &rows {
            let laid = lay(self, row);
            let height = height_of(&laid);
            if self.y - height < MARGIN {
                self.new_page();
                pending_header = !header.is_empty();
            }
            if pending_header {
                let h = lay(self, &header);
                let hh = height_of(&h);
                self.draw_row(&widths, &h, hh, lead, size, Row::Header);
                pending_header = false;
            }
            self.room(height);
            self.draw_row(
                &widths,
                &laid,
                height,
                lead,
                size,
                if figures { Row::Figures } else { Row::Plain },
            );
        }
        self.y -= size * 0.6;
    }

    fn draw_row(
        &mut self,
        widths: &[f32],
        cells: &[Vec<SetLine>],
        height: f32,
        lead: f32,
        size: f32,
        kind: Row,
    ) {
        let shaded = kind == Row::Header;
        let total: f32 = widths.iter().sum();
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
                x += w;
                page.move_to(x, top).line_to(x, top - height).stroke();
            }
        }
        let mut x = MARGIN;
        for (lines, w) in cells.iter().zip(widths) {
            // Figures (counts, durations) line up on the right, as in a ledger.
            let right = kind == Row::Figures && lines.len() == 1 && is_figure(&lines[0].text);
            let mut y = top - lead + 2.0;
            for line in lines {
                let lx = if right {
                    x + w - CELL_PAD - line.width
                } else {
                    x + CELL_PAD
                };
                self.show(lx, y, size, &line.glyphs);
                y -= lead;
            }
            x += w;
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

/// Slack when fitting text to a width (sums of glyph widths in another
/// order differ in the last bits).
const FIT: f32 = 0.01;

/// Characters that do not begin a line (closing brackets and marks, 行頭禁則).
const NO_LINE_START: &str =
    "、。，．・：；？！ー）」』】〕〉》］｝ゃゅょっぁぃぅぇぉャュョッァィゥェォ々),.:;!?%]}";
/// Characters that do not end a line (opening brackets, 行末禁則).
const NO_LINE_END: &str = "（「『【〔〈《［｛([{";

/// Japanese and other wide (full-width) characters: a line may break
/// between any two of them. Latin letters, digits and ASCII marks are not
/// wide, so a Latin word, a number, a date or an identifier stays whole.
fn is_wide(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{115F}'
        | '\u{2E80}'..='\u{A4CF}'
        | '\u{AC00}'..='\u{D7A3}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FE30}'..='\u{FE4F}'
        | '\u{FF00}'..='\u{FF60}'
        | '\u{FFE0}'..='\u{FFE6}'
        | '\u{20000}'..='\u{3FFFD}')
}

/// Whether a line may break between `a` and `b`: at spaces, and next to a
/// wide character unless a bracket or mark would be left alone at a line's
/// start or end. Never inside a run of Latin letters, digits and marks.
fn may_break_between(a: char, b: char) -> bool {
    if a.is_whitespace() != b.is_whitespace() {
        return true;
    }
    if a.is_whitespace() || NO_LINE_START.contains(b) || NO_LINE_END.contains(a) {
        return false;
    }
    is_wide(a) || is_wide(b)
}

/// `para` cut at every place a line may break: words, single wide
/// characters (with the marks that cling to them) and runs of spaces.
fn pieces(para: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev = None;
    for (i, c) in para.char_indices() {
        if prev.is_some_and(|p| may_break_between(p, c)) {
            out.push(&para[start..i]);
            start = i;
        }
        prev = Some(c);
    }
    if start < para.len() {
        out.push(&para[start..]);
    }
    out
}

/// `text` in lines no wider than `width`, where `advance` gives each
/// character's width. Lines break at the places [`may_break_between`]
/// allows; a word wider than `width` on its own is the one thing cut by
/// character (last resort: it could not fit otherwise). `\n` starts a new
/// line. Spaces at a break are dropped.
pub(crate) fn break_lines(text: &str, width: f32, advance: impl Fn(char) -> f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        let mut w = 0.0;
        for piece in pieces(para) {
            let pw: f32 = piece.chars().map(&advance).sum();
            if piece.starts_with(char::is_whitespace) {
                if !line.is_empty() {
                    line.push_str(piece);
                    w += pw;
                }
                continue;
            }
            if w + pw > width + FIT && !line.trim_end().is_empty() {
                lines.push(line.trim_end().to_string());
                line.clear();
                w = 0.0;
            }
            if pw > width + FIT {
                for c in piece.chars() {
                    let a = advance(c);
                    if w + a > width + FIT && !line.is_empty() {
                        lines.push(std::mem::take(&mut line));
                        w = 0.0;
                    }
                    line.push(c);
                    w += a;
                }
            } else {
                line.push_str(piece);
                w += pw;
            }
        }
        lines.push(line.trim_end().to_string());
    }
    lines
}

/// How wide a column's text wants to be: `narrowest` is its widest
/// unbreakable piece (narrower would cut a word), `comfortable` is no
/// narrower than that nor than a few characters (so that Japanese, which
/// may break anywhere, is not set one character a line), `widest` its
/// longest line unbroken.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Extent {
    pub narrowest: f32,
    pub comfortable: f32,
    pub widest: f32,
}

impl Extent {
    /// The extent of a column holding both.
    pub fn max(self, o: Extent) -> Extent {
        Extent {
            narrowest: self.narrowest.max(o.narrowest),
            comfortable: self.comfortable.max(o.comfortable),
            widest: self.widest.max(o.widest),
        }
    }

    fn padded(self, pad: f32) -> Extent {
        Extent {
            narrowest: self.narrowest + pad,
            comfortable: self.comfortable + pad,
            widest: self.widest + pad,
        }
    }
}

/// Characters (full-width) a line of Japanese keeps when it can.
const COMFORTABLE_CHARS: f32 = 4.0;

/// The [`Extent`] of one cell's text.
pub(crate) fn text_extent(text: &str, advance: impl Fn(char) -> f32) -> Extent {
    let em = advance('国');
    let mut e = Extent::default();
    for para in text.split('\n') {
        let mut line = 0.0;
        for piece in pieces(para) {
            let pw: f32 = piece.chars().map(&advance).sum();
            line += pw;
            if !piece.starts_with(char::is_whitespace) {
                e.narrowest = e.narrowest.max(pw);
            }
        }
        e.widest = e.widest.max(line);
        e.comfortable = e.comfortable.max(line.min(COMFORTABLE_CHARS * em));
    }
    e.comfortable = e.comfortable.max(e.narrowest);
    e
}

/// Column widths, summing to `total`, that follow their content: a column
/// whose text fits in its share is as wide as its longest line; the rest
/// share what is left, each at least comfortable (else at least as wide as
/// its longest word) and the wider the more text it holds. Only when even
/// the longest words do not fit side by side are the columns with the
/// longest words (a digest, say) made narrower than them, and those words
/// cut.
pub(crate) fn column_widths(extents: &[Extent], total: f32) -> Vec<f32> {
    let comfortable: Vec<Extent> = extents
        .iter()
        .map(|e| Extent {
            narrowest: e.comfortable,
            ..*e
        })
        .collect();
    fit_columns(&comfortable, total)
        .or_else(|| fit_columns(extents, total))
        .unwrap_or_else(|| narrowest_capped(&comfortable, total))
}

/// Widths with every column at least `narrowest`, if they fit in `total`.
fn fit_columns(extents: &[Extent], total: f32) -> Option<Vec<f32>> {
    let n = extents.len();
    let mut widths: Vec<Option<f32>> = vec![None; n];
    let mut left = total;
    // Columns whose whole text fits in an even share of what is left.
    loop {
        let open: Vec<usize> = (0..n).filter(|i| widths[*i].is_none()).collect();
        if open.is_empty() {
            break;
        }
        let share = left / open.len() as f32;
        let fits: Vec<usize> = open
            .into_iter()
            .filter(|i| extents[*i].widest <= share)
            .collect();
        if fits.is_empty() {
            break;
        }
        for i in fits {
            widths[i] = Some(extents[i].widest);
            left -= extents[i].widest;
        }
    }
    let open: Vec<usize> = (0..n).filter(|i| widths[*i].is_none()).collect();
    if open.is_empty() {
        // Everything fits: spread the spare room so the table fills the line.
        let used: f32 = widths.iter().flatten().sum();
        return Some(
            widths
                .iter()
                .map(|w| {
                    let w = w.unwrap_or(0.0);
                    if used > 0.0 {
                        w + (total - used) * w / used
                    } else {
                        total / n as f32
                    }
                })
                .collect(),
        );
    }
    let share = |cols: &[usize], room: f32, widths: &mut Vec<Option<f32>>| -> bool {
        let min: f32 = cols.iter().map(|i| extents[*i].narrowest).sum();
        let max: f32 = cols.iter().map(|i| extents[*i].widest).sum();
        if min > room {
            return false;
        }
        for i in cols {
            let e = extents[*i];
            let grow = if max > min {
                (room - min) * (e.widest - e.narrowest) / (max - min)
            } else {
                (room - min) / cols.len() as f32
            };
            widths[*i] = Some(e.narrowest + grow);
        }
        true
    };
    if share(&open, left, &mut widths) {
        return Some(widths.into_iter().map(Option::unwrap_or_default).collect());
    }
    // The wide columns do not fit beside the whole short ones: share the
    // whole line again, every column from its narrowest up.
    let all: Vec<usize> = (0..n).collect();
    let mut widths = vec![None; n];
    share(&all, total, &mut widths)
        .then(|| widths.into_iter().map(Option::unwrap_or_default).collect())
}

/// Every column as wide as its longest word, except that no column is
/// wider than a cap chosen so the table fits: only the longest words are
/// cut.
fn narrowest_capped(extents: &[Extent], total: f32) -> Vec<f32> {
    let mut sorted: Vec<f32> = extents.iter().map(|e| e.narrowest).collect();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    let mut below = 0.0;
    let mut cap = total / n.max(1) as f32;
    for (i, w) in sorted.iter().enumerate() {
        let c = (total - below) / (n - i) as f32;
        if *w > c {
            cap = c;
            break;
        }
        below += w;
    }
    extents.iter().map(|e| e.narrowest.min(cap)).collect()
}

/// A count, a duration or another figure that lines up on the right.
fn is_figure(text: &str) -> bool {
    !text.is_empty()
        && text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ':' | '.' | ','))
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
        d.table(&["項目", "件数"], [vec!["申請".into(), "12".into()]]);
        let pdf = d.finish().unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        // The whole font is ~6 MB; the subset of a few glyphs is far smaller.
        assert!(pdf.len() < 400_000, "{} bytes", pdf.len());
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/ToUnicode"));
        assert!(text.contains("/FontFile2"));
        assert!(text.contains("/Identity-H"));
    }

    /// A stand-in for a Japanese font: full-width characters 1 em, the
    /// rest half.
    fn em(c: char) -> f32 {
        if is_wide(c) { 10.0 } else { 5.0 }
    }

    /// Where `text`, set as `lines`, was cut inside a Latin word or a
    /// number: a break with no space in `text` and narrow characters on
    /// both sides.
    fn mid_word_breaks(text: &str, lines: &[String]) -> Vec<String> {
        let mut rest = text;
        let mut cuts = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            rest = rest.trim_start_matches(' ');
            rest = rest
                .strip_prefix(line.as_str())
                .unwrap_or_else(|| panic!("{line:?} is not the next part of {text:?}"));
            let (a, b) = (line.chars().last(), rest.chars().next());
            if i + 1 < lines.len()
                && let (Some(a), Some(b)) = (a, b)
                && !is_wide(a)
                && !is_wide(b)
                && !a.is_whitespace()
                && !b.is_whitespace()
            {
                cuts.push(format!("{line}|{rest}"));
            }
            rest = rest.strip_prefix('\n').unwrap_or(rest);
        }
        cuts
    }

    #[test]
    fn lines_break_at_spaces_and_between_japanese_characters_not_inside_words() {
        assert_eq!(
            break_lines("acme lab no_approved_request", 100.0, em),
            ["acme lab", "no_approved_request"]
        );
        // Japanese breaks at any character; the Latin word inside stays whole.
        let lines = break_lines("作業者tanakaが確認", 40.0, em);
        assert_eq!(lines, ["作業者", "tanakaが", "確認"]);
        assert!(lines.iter().all(|l| l.chars().map(em).sum::<f32>() <= 40.0));
        // A date and a time break at the space between them, not at a hyphen.
        assert_eq!(
            break_lines("2026-12-05 13:00", 60.0, em),
            ["2026-12-05", "13:00"]
        );
        // Brackets and marks stay with their word (禁則).
        let lines = break_lines("記録ダイジェスト（SHA-256）・状態", 80.0, em);
        assert!(lines.iter().all(|l| !l.ends_with('（')), "{lines:?}");
        assert!(
            lines
                .iter()
                .all(|l| !l.starts_with('）') && !l.starts_with('・')),
            "{lines:?}"
        );
        assert!(
            mid_word_breaks("記録ダイジェスト（SHA-256）・状態", &lines).is_empty(),
            "{lines:?}"
        );
        // New lines are kept; spaces at a break are dropped.
        assert_eq!(break_lines("a b\nc", 100.0, em), ["a b", "c"]);
        assert_eq!(break_lines("aaaa   bbbb", 30.0, em), ["aaaa", "bbbb"]);
        // Only a word wider than the whole width is cut (it cannot fit).
        assert_eq!(break_lines("abcdefgh", 20.0, em), ["abcd", "efgh"]);
        // The check below catches such a cut.
        assert_eq!(
            mid_word_breaks("abcdefgh", &break_lines("abcdefgh", 20.0, em)),
            ["abcd|efgh"]
        );
    }

    #[test]
    fn columns_follow_their_content_so_no_cell_breaks_inside_a_word() {
        // The monthly report's session table: narrow Japanese headers over
        // identifiers, dates and names.
        let header = [
            "セッションID",
            "業者",
            "システム",
            "作業者",
            "対象",
            "方式",
            "開始",
            "時間",
            "状態",
            "申請番号",
            "時間外",
            "承認なし",
        ];
        let row = [
            "6f1c2b0e-3d4a-4b5c-9d8e-7f6a5b4c3d2e",
            "acme",
            "lab",
            "tanaka",
            "db01",
            "ssh",
            "2026-12-05 13:00",
            "0:01",
            "closed",
            "R-2026-0001",
            "時間外",
            "承認なし",
        ];
        let total = 515.0;
        let extents: Vec<Extent> = header
            .iter()
            .zip(row)
            .map(|(h, r)| text_extent(h, em).max(text_extent(r, em)))
            .collect();
        let widths = column_widths(&extents, total);
        assert!(
            (widths.iter().sum::<f32>() - total).abs() < 0.1,
            "{widths:?}"
        );
        for ((w, e), (h, r)) in widths.iter().zip(&extents).zip(header.iter().zip(row)) {
            assert!(*w + 0.01 >= e.narrowest, "{h}: {w} < {e:?}");
            for t in [*h, r] {
                let lines = break_lines(t, *w, em);
                assert!(
                    mid_word_breaks(t, &lines).is_empty(),
                    "{t} in {w}: {lines:?}"
                );
                assert!(
                    lines
                        .iter()
                        .all(|l| l.chars().map(em).sum::<f32>() <= w + 0.01),
                    "{t} overflows {w}: {lines:?}"
                );
            }
        }
        // A table that fits on one line gets each column its whole text.
        let narrow = [
            Extent {
                narrowest: 20.0,
                comfortable: 20.0,
                widest: 40.0,
            },
            Extent {
                narrowest: 10.0,
                comfortable: 10.0,
                widest: 10.0,
            },
        ];
        let w = column_widths(&narrow, 100.0);
        assert!(w[0] >= 40.0 && w[1] >= 10.0, "{w:?}");
        // Japanese headers over short figures keep a few characters a line.
        let header = text_extent("承認なしのセッション", em);
        let w = column_widths(&[header, text_extent("no_approved_request", em)], 150.0);
        assert!(w[0] >= 40.0, "{w:?}");
        // Words too wide to sit side by side: only the longest is cut.
        let digest = text_extent(&"0123456789abcdef".repeat(4), em);
        let date = text_extent("2027-03-31", em);
        let w = column_widths(&[date, date, digest], 300.0);
        assert!((w.iter().sum::<f32>() - 300.0).abs() < 0.1, "{w:?}");
        assert_eq!(w[0], date.narrowest, "{w:?}");
        assert!(w[2] < digest.narrowest, "{w:?}");
    }

    #[test]
    fn a_table_of_narrow_columns_reads_back_with_its_words_whole() {
        let path = Path::new(crate::config::DEFAULT_REPORT_FONT);
        let font = ReportFont::load(path).expect("the report font (.ci/install-peers)");
        let mut d = Document::new(&font, "試験").unwrap();
        let words = [
            "6f1c2b0e-3d4a-4b5c-9d8e-7f6a5b4c3d2e",
            "no_approved_request",
            "R-2026-0001",
            "2026-12-05",
        ];
        d.table(
            &[
                "セッションID",
                "業者",
                "システム",
                "拒否の理由",
                "申請番号",
                "開始",
                "承認なしのセッション",
            ],
            [vec![
                words[0].into(),
                "acme".into(),
                "lab".into(),
                words[1].into(),
                words[2].into(),
                format!("{} 13:00", words[3]),
                "0".into(),
            ]],
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.pdf");
        std::fs::write(&file, d.finish().unwrap()).unwrap();
        let out = std::process::Command::new("pdftotext")
            .args(["-layout", file.to_str().unwrap(), "-"])
            .output()
            .expect("pdftotext (poppler-utils, .ci/install-peers)");
        let text = String::from_utf8(out.stdout).unwrap();
        for w in words {
            assert!(
                text.lines().any(|l| l.split_whitespace().any(|x| x == w)),
                "{w} is cut: {text}"
            );
        }
    }
}
