//! Screens sekisho draws itself into an RDP session, before any target is
//! contacted: the sign-in form, the choice of targets for a person who
//! named none, and the refusal screen, which shows why a connection is
//! turned away (in Japanese and English) for a few seconds before the
//! disconnect, so the person does not have to ask an administrator what an
//! error code means.
//!
//! The pure part: text laid out with a TrueType/OpenType font from a Debian
//! package (`[rdp] screen_font`, IPAexGothic by default) into a 32-bit
//! canvas, cut into uncompressed bitmap updates of 64×64 tiles (fast-path,
//! which every client decodes whatever colour depth it asked for). The
//! activation that lets a client show them is in `front::show_screen`.

use ironrdp_core::encode_vec;
use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression};
use ironrdp_pdu::fast_path::{
    EncryptionFlags, FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode,
};
use ironrdp_pdu::geometry::InclusiveRectangle;

/// Side of the square tiles a screen is sent in: 64×64×4 bytes fit one
/// fast-path PDU.
const TILE: u16 = 64;

/// A font to draw screens with.
pub struct ScreenFont(ab_glyph::FontVec);

impl std::fmt::Debug for ScreenFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScreenFont")
    }
}

impl ScreenFont {
    /// Reads a TrueType/OpenType font file.
    pub fn load(path: &std::path::Path) -> Result<ScreenFont, String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ab_glyph::FontVec::try_from_vec(data)
            .map(ScreenFont)
            .map_err(|e| format!("{}: not a usable font ({e})", path.display()))
    }
}

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

pub const BACKGROUND: Rgb = Rgb(0x1f, 0x2a, 0x44);
pub const PANEL: Rgb = Rgb(0xf4, 0xf4, 0xf0);
pub const INK: Rgb = Rgb(0x20, 0x20, 0x20);
pub const ALERT: Rgb = Rgb(0xb0, 0x1c, 0x1c);

/// A picture of the whole desktop.
pub struct Canvas {
    pub width: u16,
    pub height: u16,
    pixels: Vec<Rgb>,
}

impl Canvas {
    pub fn new(width: u16, height: u16, fill: Rgb) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![fill; usize::from(width) * usize::from(height)],
        }
    }

    pub fn pixel(&self, x: u16, y: u16) -> Rgb {
        self.pixels[usize::from(y) * usize::from(self.width) + usize::from(x)]
    }

    /// Fills a rectangle, clipped to the canvas.
    pub fn fill(&mut self, x: u16, y: u16, w: u16, h: u16, colour: Rgb) {
        let x_end = x.saturating_add(w).min(self.width);
        let y_end = y.saturating_add(h).min(self.height);
        for row in y..y_end {
            for col in x..x_end {
                self.pixels[usize::from(row) * usize::from(self.width) + usize::from(col)] = colour;
            }
        }
    }

    fn blend(&mut self, x: i32, y: i32, colour: Rgb, coverage: f32) {
        let (Ok(x), Ok(y)) = (u16::try_from(x), u16::try_from(y)) else {
            return;
        };
        if x >= self.width || y >= self.height {
            return;
        }
        let at = usize::from(y) * usize::from(self.width) + usize::from(x);
        let under = self.pixels[at];
        let a = coverage.clamp(0.0, 1.0);
        let mix = |fg: u8, bg: u8| (f32::from(fg) * a + f32::from(bg) * (1.0 - a)).round() as u8;
        self.pixels[at] = Rgb(
            mix(colour.0, under.0),
            mix(colour.1, under.1),
            mix(colour.2, under.2),
        );
    }

    /// Draws one line of text with its baseline at `baseline`, starting at
    /// `x`; returns the width drawn.
    pub fn text(
        &mut self,
        font: &ScreenFont,
        x: f32,
        baseline: f32,
        size: f32,
        colour: Rgb,
        text: &str,
    ) -> f32 {
        use ab_glyph::{Font as _, ScaleFont as _};
        let scaled = font.0.as_scaled(size);
        let mut caret = x;
        let mut previous = None;
        for ch in text.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(prev) = previous {
                caret += scaled.kern(prev, id);
            }
            let glyph = id.with_scale_and_position(size, ab_glyph::point(caret, baseline));
            caret += scaled.h_advance(id);
            previous = Some(id);
            if let Some(outlined) = font.0.outline_glyph(glyph) {
                let bounds = outlined.px_bounds();
                outlined.draw(|gx, gy, coverage| {
                    self.blend(
                        bounds.min.x as i32 + gx as i32,
                        bounds.min.y as i32 + gy as i32,
                        colour,
                        coverage,
                    );
                });
            }
        }
        caret - x
    }

    /// The fast-path bitmap updates that paint this canvas, one 64×64 tile
    /// (or smaller at the edges) each, 32 bits per pixel, uncompressed.
    pub fn fast_path_updates(&self) -> Result<Vec<Vec<u8>>, String> {
        self.fast_path_updates_in((0, 0, self.width, self.height))
    }

    /// The updates of the tiles that meet `area` (x, y, w, h) only: a
    /// redraw of part of the screen.
    pub fn fast_path_updates_in(&self, area: (u16, u16, u16, u16)) -> Result<Vec<Vec<u8>>, String> {
        let (ax, ay, aw, ah) = area;
        let mut out = Vec::new();
        let mut data = Vec::with_capacity(usize::from(TILE) * usize::from(TILE) * 4);
        for top in (0..self.height).step_by(usize::from(TILE)) {
            for left in (0..self.width).step_by(usize::from(TILE)) {
                let w = TILE.min(self.width - left);
                let h = TILE.min(self.height - top);
                let meets = left < ax.saturating_add(aw)
                    && ax < left + w
                    && top < ay.saturating_add(ah)
                    && ay < top + h;
                if !meets {
                    continue;
                }
                // Uncompressed bitmap rows go bottom-up; BGRA.
                data.clear();
                for row in (top..top + h).rev() {
                    for col in left..left + w {
                        let Rgb(r, g, b) = self.pixel(col, row);
                        data.extend_from_slice(&[b, g, r, 0xff]);
                    }
                }
                let update = BitmapUpdateData {
                    rectangles: vec![BitmapData {
                        rectangle: InclusiveRectangle {
                            left,
                            top,
                            right: left + w - 1,
                            bottom: top + h - 1,
                        },
                        width: w,
                        height: h,
                        bits_per_pixel: 32,
                        compression_flags: Compression::empty(),
                        compressed_data_header: None,
                        bitmap_data: &data,
                    }],
                };
                let body = encode_vec(&update).map_err(|e| e.to_string())?;
                let pdu = FastPathUpdatePdu {
                    fragmentation: Fragmentation::Single,
                    update_code: UpdateCode::Bitmap,
                    compression_flags: None,
                    compression_type: None,
                    data: &body,
                };
                let pdu = encode_vec(&pdu).map_err(|e| e.to_string())?;
                let header = FastPathHeader::new(EncryptionFlags::empty(), pdu.len());
                let mut bytes = encode_vec(&header).map_err(|e| e.to_string())?;
                bytes.extend_from_slice(&pdu);
                out.push(bytes);
            }
        }
        Ok(out)
    }
}

/// What a refusal screen says: a headline per rule in both languages and
/// the reason the audit log got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalText {
    pub ja: &'static str,
    pub en: &'static str,
    pub detail: String,
}

/// The headline for a refusal: by the policy rule when there is one, else
/// the sign-in failure (which factor failed is never shown).
pub fn refusal_text(rule: Option<&str>, detail: &str) -> RefusalText {
    let (ja, en) = match rule {
        Some("unknown_target") => ("接続先が見つかりません", "No such target"),
        Some("user_disabled") => ("アカウントが無効です", "Your account is disabled"),
        Some("user_locked") => (
            "アカウントがロックされています",
            "Your account is locked after repeated failures",
        ),
        Some("no_endpoint" | "protocol") => (
            "この接続先へは RDP で接続できません",
            "RDP is not offered for this target",
        ),
        Some("no_access") => (
            "この接続先の利用権限がありません",
            "You have no access to this target",
        ),
        Some("contract") => ("契約期間外です", "Outside your contract period"),
        Some("hours") => (
            "接続が許可された時間帯ではありません",
            "Outside the hours allowed for this target",
        ),
        Some("source" | "mynumber_closed") => (
            "この接続元からは接続できません",
            "Not allowed from this network",
        ),
        Some("rdp_virtual") => (
            "仮想サーバへは RDP で接続できません (SSH を使ってください)",
            "RDP is refused to a virtual server: use SSH",
        ),
        Some("hop_no_parent" | "hop_not_allowed") => (
            "このサーバからの接続は許可されていません",
            "This server-to-server hop is not allowed",
        ),
        Some("no_approved_request") => (
            "承認済みの作業申請がありません",
            "No approved work request covers this",
        ),
        Some("emergency_stop") => (
            "緊急停止中のため接続できません",
            "An emergency stop is in force",
        ),
        Some(super::control::NO_REACHABLE_TARGET_RULE) => (
            "いま RDP で接続できる接続先がありません",
            "No target you may reach over RDP now",
        ),
        Some(_) => ("接続できません", "The connection is refused"),
        None => ("サインインできませんでした", "Sign-in failed"),
    };
    RefusalText {
        ja,
        en,
        detail: detail.to_owned(),
    }
}

/// The largest area sekisho draws its screens on. The desktop size comes
/// from the client's GCC data before anyone has signed in (up to 65535 ×
/// 65535: a 12 GB canvas); sekisho's own share announces at most this size
/// (the client adapts), and the target's share brings the client's own.
const DRAWN_MAX: (u16, u16) = (1920, 1200);

/// The part of a `width` × `height` desktop sekisho's screens cover.
fn drawn_size(width: u16, height: u16) -> (u16, u16) {
    (width.min(DRAWN_MAX.0), height.min(DRAWN_MAX.1))
}

/// The refusal screen: a panel with the headline in Japanese and English,
/// the reason, and a line saying the connection closes.
pub fn refusal_screen(font: &ScreenFont, width: u16, height: u16, text: &RefusalText) -> Canvas {
    let (width, height) = drawn_size(width, height);
    let mut canvas = Canvas::new(width, height, BACKGROUND);
    let panel_w = width.saturating_sub(80).min(900);
    let panel_h = 260.min(height.saturating_sub(40));
    let px = (width - panel_w) / 2;
    let py = (height - panel_h) / 2;
    canvas.fill(px, py, panel_w, panel_h, PANEL);
    canvas.fill(px, py, panel_w, 8, ALERT);
    let x = f32::from(px) + 32.0;
    let mut y = f32::from(py) + 64.0;
    canvas.text(font, x, y, 24.0, INK, "sekisho");
    y += 48.0;
    canvas.text(font, x, y, 30.0, ALERT, text.ja);
    y += 40.0;
    canvas.text(font, x, y, 24.0, ALERT, text.en);
    y += 36.0;
    let detail: String = text.detail.chars().take(80).collect();
    canvas.text(font, x, y, 18.0, INK, &detail);
    y += 32.0;
    canvas.text(
        font,
        x,
        y,
        18.0,
        INK,
        "まもなく切断します / This connection closes in a few seconds",
    );
    canvas
}

/// The drawn sign-in form: ID (`person@target`), password and one-time
/// code, typed on the client's keyboard. What is typed stays in this value
/// (never logged, never recorded); password and code are shown masked.
#[derive(Default)]
pub struct SignInForm {
    pub id: String,
    password: zeroize::Zeroizing<String>,
    code: zeroize::Zeroizing<String>,
    /// 0 = ID, 1 = password, 2 = code.
    focus: usize,
    /// The last failure, shown under the fields.
    pub message: Option<(&'static str, &'static str)>,
}

/// What a key did to the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormAction {
    Nothing,
    Redraw,
    Submit,
}

/// Longest field accepted (a password manager's paste stays well below).
const FIELD_MAX: usize = 128;

impl SignInForm {
    /// A form with the ID the client already sent, if any.
    pub fn new(id: &str) -> SignInForm {
        SignInForm {
            id: id.chars().take(FIELD_MAX).collect(),
            focus: if id.is_empty() { 0 } else { 1 },
            ..SignInForm::default()
        }
    }

    /// A form for a client that sent its ID and password but no code
    /// (outside the sign-in window): the password is kept, masked and
    /// unchecked, and the focus is on the code, so both factors are checked
    /// together once the code is typed.
    pub fn asking_code(id: &str, password: zeroize::Zeroizing<String>) -> SignInForm {
        let mut form = SignInForm::new(id);
        form.password = password;
        let cut = form
            .password
            .char_indices()
            .nth(FIELD_MAX)
            .map_or(form.password.len(), |(at, _)| at);
        form.password.truncate(cut);
        form.focus = 2;
        form.message = Some((
            "ワンタイムコードを入力してください",
            "Type your one-time code",
        ));
        form
    }

    fn field(&mut self) -> &mut String {
        match self.focus {
            0 => &mut self.id,
            1 => &mut self.password,
            _ => &mut self.code,
        }
    }

    /// One typed key.
    pub fn feed(&mut self, typed: &crate::protocol::rdp::keyboard::Typed) -> FormAction {
        use crate::protocol::rdp::keyboard::Typed;
        match typed {
            Typed::Char(c) if !c.is_control() => {
                let field = self.field();
                if field.chars().count() < FIELD_MAX {
                    field.push(*c);
                }
                FormAction::Redraw
            }
            Typed::Char(_) => FormAction::Nothing,
            Typed::Backspace => {
                self.field().pop();
                FormAction::Redraw
            }
            Typed::Enter if self.focus < 2 => {
                self.focus += 1;
                FormAction::Redraw
            }
            Typed::Enter => FormAction::Submit,
            Typed::Named(name) if name == "<Tab>" => {
                self.focus = (self.focus + 1) % 3;
                FormAction::Redraw
            }
            Typed::Named(name) if name == "<Shift+Tab>" => {
                self.focus = (self.focus + 2) % 3;
                FormAction::Redraw
            }
            Typed::Named(_) => FormAction::Nothing,
        }
    }

    /// The secret as the TLS sign-in reads it: password followed by the
    /// code (or the bare password, for the sign-in window).
    pub fn secret(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(format!("{}{}", self.password.as_str(), self.code.as_str()))
    }

    /// After a refused attempt: password and code cleared, focus on the
    /// password, the message shown.
    pub fn failed(&mut self, ja: &'static str, en: &'static str) {
        self.password.clear();
        self.code.clear();
        self.focus = if self.id.is_empty() { 0 } else { 1 };
        self.message = Some((ja, en));
    }

    /// Where the form's panel is on a desktop of this size: (x, y, w, h).
    pub fn panel(width: u16, height: u16) -> (u16, u16, u16, u16) {
        let (width, height) = drawn_size(width, height);
        let w = width.saturating_sub(80).min(760);
        let h = 400.min(height.saturating_sub(40));
        ((width - w) / 2, (height - h) / 2, w, h)
    }

    /// The form drawn on a desktop of this size.
    pub fn draw(&self, font: &ScreenFont, width: u16, height: u16) -> Canvas {
        let (width, height) = drawn_size(width, height);
        let mut canvas = Canvas::new(width, height, BACKGROUND);
        let (px, py, pw, ph) = SignInForm::panel(width, height);
        canvas.fill(px, py, pw, ph, PANEL);
        canvas.fill(px, py, pw, 8, Rgb(0x2f, 0x5d, 0xa8));
        let x = f32::from(px) + 32.0;
        let mut y = f32::from(py) + 56.0;
        canvas.text(font, x, y, 26.0, INK, "sekisho サインイン / Sign in");
        y += 30.0;
        canvas.text(
            font,
            x,
            y,
            16.0,
            INK,
            "Tab / Enter で次の欄へ — Tab or Enter moves to the next field",
        );
        let labels = [
            "ID (利用者@接続先、または 利用者 / person@target, or person)",
            "パスワード / Password",
            "ワンタイムコード / One-time code",
        ];
        let masked = |s: &str| "●".repeat(s.chars().count());
        let values = [self.id.clone(), masked(&self.password), masked(&self.code)];
        for (i, (label, value)) in labels.iter().zip(values.iter()).enumerate() {
            y += 40.0;
            canvas.text(font, x, y, 18.0, INK, label);
            let box_y = (y + 8.0) as u16;
            let box_x = px + 32;
            let box_w = pw.saturating_sub(64);
            let edge = if i == self.focus {
                Rgb(0x2f, 0x5d, 0xa8)
            } else {
                Rgb(0x90, 0x90, 0x90)
            };
            canvas.fill(box_x, box_y, box_w, 34, edge);
            canvas.fill(
                box_x + 2,
                box_y + 2,
                box_w.saturating_sub(4),
                30,
                Rgb(0xff, 0xff, 0xff),
            );
            let shown: String = value.chars().take(48).collect();
            let drawn = canvas.text(font, x + 8.0, y + 34.0, 20.0, INK, &shown);
            if i == self.focus {
                canvas.fill((x + 10.0 + drawn) as u16, box_y + 6, 2, 22, INK);
            }
            y += 34.0;
        }
        if let Some((ja, en)) = self.message {
            y += 36.0;
            canvas.text(font, x, y, 18.0, ALERT, &format!("{ja} / {en}"));
        }
        canvas
    }
}

/// The drawn choice of targets, for a person who signed in without naming
/// one and may reach several over RDP now (the SSH menu's twin): a
/// numbered list, chosen with the number keys or the arrow keys, then
/// Enter.
pub struct TargetChoice {
    /// (name, system, until) of each target offered, in policy order.
    pub targets: Vec<(String, String, String)>,
    /// The highlighted row.
    pub selected: usize,
    /// Digits typed since the last move, read as a row number.
    number: String,
}

/// What a key did to the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceAction {
    Nothing,
    Redraw,
    /// Enter on this row.
    Chosen(usize),
    /// Esc: the person leaves without choosing.
    Cancel,
}

/// Rows of the list drawn at once; more scroll with the selection.
const CHOICE_ROWS: usize = 8;

impl TargetChoice {
    pub fn new(targets: Vec<(String, String, String)>) -> TargetChoice {
        TargetChoice {
            targets,
            selected: 0,
            number: String::new(),
        }
    }

    /// One typed key: digits pick the row of that number (`1`, then `12`
    /// when there are twelve), ↑/↓ (and the numeric keypad's) move, Enter
    /// chooses, Backspace takes back a digit, Esc cancels.
    pub fn feed(&mut self, typed: &crate::protocol::rdp::keyboard::Typed) -> ChoiceAction {
        use crate::protocol::rdp::keyboard::Typed;
        let count = self.targets.len();
        if count == 0 {
            return ChoiceAction::Nothing;
        }
        match typed {
            Typed::Char(c) if c.is_ascii_digit() => {
                let mut number = format!("{}{c}", self.number);
                if Self::row_of(&number, count).is_none() {
                    // A digit that makes no row starts a new number.
                    number = c.to_string();
                }
                match Self::row_of(&number, count) {
                    Some(row) => {
                        self.number = number;
                        self.selected = row;
                        ChoiceAction::Redraw
                    }
                    None => {
                        self.number.clear();
                        ChoiceAction::Nothing
                    }
                }
            }
            Typed::Backspace => {
                self.number.pop();
                if let Some(row) = Self::row_of(&self.number, count) {
                    self.selected = row;
                }
                ChoiceAction::Redraw
            }
            Typed::Named(name) if name == "<Up>" => {
                self.number.clear();
                self.selected = (self.selected + count - 1) % count;
                ChoiceAction::Redraw
            }
            Typed::Named(name) if name == "<Down>" || name == "<Tab>" => {
                self.number.clear();
                self.selected = (self.selected + 1) % count;
                ChoiceAction::Redraw
            }
            Typed::Named(name) if name == "<Esc>" => ChoiceAction::Cancel,
            Typed::Enter => ChoiceAction::Chosen(self.selected),
            _ => ChoiceAction::Nothing,
        }
    }

    /// `"3"` → row 2, when there are at least three rows.
    fn row_of(number: &str, count: usize) -> Option<usize> {
        let n: usize = number.parse().ok()?;
        (1..=count).contains(&n).then(|| n - 1)
    }

    /// The rows drawn: a window of at most [`CHOICE_ROWS`] that keeps the
    /// selection in view.
    pub fn visible(&self) -> std::ops::Range<usize> {
        let count = self.targets.len();
        let first = self
            .selected
            .saturating_sub(CHOICE_ROWS - 1)
            .min(count.saturating_sub(CHOICE_ROWS));
        first..(first + CHOICE_ROWS).min(count)
    }

    /// The choice drawn on a desktop of this size, in the sign-in form's
    /// panel (so a redraw covers the same area).
    pub fn draw(&self, font: &ScreenFont, width: u16, height: u16) -> Canvas {
        let (width, height) = drawn_size(width, height);
        let mut canvas = Canvas::new(width, height, BACKGROUND);
        let (px, py, pw, ph) = SignInForm::panel(width, height);
        canvas.fill(px, py, pw, ph, PANEL);
        canvas.fill(px, py, pw, 8, Rgb(0x2f, 0x5d, 0xa8));
        let x = f32::from(px) + 32.0;
        let mut y = f32::from(py) + 56.0;
        canvas.text(
            font,
            x,
            y,
            26.0,
            INK,
            "接続先を選んでください / Choose a target",
        );
        y += 30.0;
        canvas.text(
            font,
            x,
            y,
            16.0,
            INK,
            "番号キーか ↑↓ で選び Enter — number keys or ↑/↓, then Enter (Esc: 切断 / quit)",
        );
        y += 14.0;
        let visible = self.visible();
        if visible.start > 0 {
            canvas.text(font, x, y, 14.0, INK, "▲");
        }
        for row in visible.clone() {
            let (name, system, until) = &self.targets[row];
            y += 32.0;
            let row_y = (y - 22.0) as u16;
            let box_w = pw.saturating_sub(64);
            let ink = if row == self.selected {
                canvas.fill(px + 32, row_y, box_w, 30, Rgb(0x2f, 0x5d, 0xa8));
                PANEL
            } else {
                INK
            };
            let line = format!("{:>2}) {name}   ({system}, 〜{until})", row + 1);
            let line: String = line.chars().take(70).collect();
            canvas.text(font, x + 8.0, y, 20.0, ink, &line);
        }
        if visible.end < self.targets.len() {
            canvas.text(font, x, y + 26.0, 14.0, INK, "▼");
        }
        canvas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn font() -> Option<ScreenFont> {
        ScreenFont::load(std::path::Path::new(crate::config::DEFAULT_SCREEN_FONT)).ok()
    }

    #[test]
    fn text_is_drawn_in_ink_and_leaves_the_rest_alone() {
        let Some(font) = font() else {
            eprintln!(
                "skipped: {} not installed",
                crate::config::DEFAULT_SCREEN_FONT
            );
            return;
        };
        let mut canvas = Canvas::new(200, 60, PANEL);
        let width = canvas.text(&font, 10.0, 40.0, 30.0, INK, "接続 OK");
        assert!(width > 60.0, "{width}");
        let inked = (0..200)
            .flat_map(|x| (0..60).map(move |y| (x, y)))
            .filter(|&(x, y)| canvas.pixel(x, y) == INK)
            .count();
        assert!(inked > 50, "almost nothing drawn: {inked}");
        assert_eq!(canvas.pixel(199, 59), PANEL);
        assert_eq!(canvas.pixel(0, 0), PANEL);
    }

    #[test]
    fn a_huge_claimed_desktop_gets_a_bounded_canvas() {
        let (x, y, w, h) = SignInForm::panel(u16::MAX, u16::MAX);
        assert!(
            x + w <= DRAWN_MAX.0 && y + h <= DRAWN_MAX.1,
            "{x} {y} {w} {h}"
        );
        assert_eq!(drawn_size(u16::MAX, u16::MAX), DRAWN_MAX);
        assert_eq!(drawn_size(1024, 768), (1024, 768));
    }

    #[test]
    fn every_rule_has_a_japanese_and_an_english_headline() {
        for rule in crate::policy::Rule::ALL {
            let t = refusal_text(Some(rule.as_str()), "x");
            assert!(!t.ja.is_empty() && !t.en.is_empty());
            assert_ne!(
                t.en, "The connection is refused",
                "{rule:?} has no headline"
            );
        }
        assert_eq!(refusal_text(None, "x").en, "Sign-in failed");
    }

    #[test]
    fn the_canvas_is_cut_into_tiles_that_decode_as_bitmap_updates() {
        let mut canvas = Canvas::new(130, 70, BACKGROUND);
        canvas.fill(64, 64, 10, 6, ALERT);
        let updates = canvas.fast_path_updates().unwrap();
        // 3 columns (64, 64, 2) × 2 rows (64, 6).
        assert_eq!(updates.len(), 6);
        let mut covered = 0usize;
        for bytes in &updates {
            let (header, rest) = {
                let mut cursor = ironrdp_core::ReadCursor::new(bytes);
                let h: FastPathHeader = ironrdp_core::decode_cursor(&mut cursor).unwrap();
                (h, &bytes[cursor.pos()..])
            };
            assert_eq!(header.data_length, rest.len());
            let pdu: FastPathUpdatePdu<'_> = ironrdp_core::decode(rest).unwrap();
            assert_eq!(pdu.update_code, UpdateCode::Bitmap);
            let update: BitmapUpdateData<'_> = ironrdp_core::decode(pdu.data).unwrap();
            let r = &update.rectangles[0];
            assert_eq!(
                r.bitmap_data.len(),
                usize::from(r.width) * usize::from(r.height) * 4
            );
            covered += usize::from(r.width) * usize::from(r.height);
            if r.rectangle.left == 64 && r.rectangle.top == 64 {
                // Bottom-up rows: the last row of the tile comes first.
                assert_eq!(&r.bitmap_data[..4], &[ALERT.2, ALERT.1, ALERT.0, 0xff]);
            }
        }
        assert_eq!(covered, 130 * 70);
    }

    #[test]
    fn the_form_reads_fields_in_order_and_masks_nothing_it_keeps() {
        use crate::protocol::rdp::keyboard::Typed;
        let mut form = SignInForm::new("");
        for c in "tanaka@xrdp1".chars() {
            assert_eq!(form.feed(&Typed::Char(c)), FormAction::Redraw);
        }
        assert_eq!(form.feed(&Typed::Enter), FormAction::Redraw);
        for c in "pw".chars() {
            form.feed(&Typed::Char(c));
        }
        form.feed(&Typed::Backspace);
        form.feed(&Typed::Char('W'));
        form.feed(&Typed::Named("<Tab>".into()));
        for c in "123456".chars() {
            form.feed(&Typed::Char(c));
        }
        assert_eq!(
            form.feed(&Typed::Named("<Ctrl+C>".into())),
            FormAction::Nothing
        );
        assert_eq!(form.feed(&Typed::Enter), FormAction::Submit);
        assert_eq!(form.id, "tanaka@xrdp1");
        assert_eq!(form.secret().as_str(), "pW123456");
        form.failed("x", "y");
        assert_eq!(form.secret().as_str(), "");
        assert_eq!(form.id, "tanaka@xrdp1");
        // Shift+Tab goes back to the ID.
        form.feed(&Typed::Named("<Shift+Tab>".into()));
        form.feed(&Typed::Backspace);
        assert_eq!(form.id, "tanaka@xrdp");
    }

    #[test]
    fn a_redraw_sends_only_the_tiles_of_the_area() {
        let canvas = Canvas::new(256, 256, BACKGROUND);
        assert_eq!(canvas.fast_path_updates().unwrap().len(), 16);
        assert_eq!(
            canvas.fast_path_updates_in((70, 70, 10, 10)).unwrap().len(),
            1
        );
        assert_eq!(
            canvas.fast_path_updates_in((60, 60, 10, 10)).unwrap().len(),
            4
        );
    }

    fn offered(n: usize) -> TargetChoice {
        TargetChoice::new(
            (1..=n)
                .map(|i| (format!("t{i}"), "lab".into(), "2026-12-05 17:15".into()))
                .collect(),
        )
    }

    #[test]
    fn the_choice_moves_with_arrows_and_numbers_and_chooses_on_enter() {
        use crate::protocol::rdp::keyboard::Typed;
        let up = Typed::Named("<Up>".into());
        let down = Typed::Named("<Down>".into());
        let mut choice = offered(3);
        assert_eq!(choice.feed(&Typed::Enter), ChoiceAction::Chosen(0));
        assert_eq!(choice.feed(&down), ChoiceAction::Redraw);
        assert_eq!(choice.feed(&down), ChoiceAction::Redraw);
        assert_eq!(choice.selected, 2);
        // Down from the last row wraps to the first, up from the first to the last.
        choice.feed(&down);
        assert_eq!(choice.selected, 0);
        choice.feed(&up);
        assert_eq!(choice.selected, 2);
        assert_eq!(choice.feed(&Typed::Char('2')), ChoiceAction::Redraw);
        assert_eq!(choice.feed(&Typed::Enter), ChoiceAction::Chosen(1));
        // No row 0 or 4; letters do nothing; Esc leaves.
        assert_eq!(choice.feed(&Typed::Char('4')), ChoiceAction::Nothing);
        assert_eq!(choice.feed(&Typed::Char('0')), ChoiceAction::Nothing);
        assert_eq!(choice.selected, 1);
        assert_eq!(choice.feed(&Typed::Char('x')), ChoiceAction::Nothing);
        assert_eq!(
            choice.feed(&Typed::Named("<Esc>".into())),
            ChoiceAction::Cancel
        );
        // Nothing to choose from: nothing happens.
        assert_eq!(offered(0).feed(&Typed::Enter), ChoiceAction::Nothing);
    }

    #[test]
    fn two_digits_pick_rows_past_nine_and_a_digit_that_makes_no_row_starts_again() {
        use crate::protocol::rdp::keyboard::Typed;
        let mut choice = offered(12);
        choice.feed(&Typed::Char('1'));
        assert_eq!(choice.selected, 0);
        choice.feed(&Typed::Char('2'));
        assert_eq!(choice.selected, 11);
        // "123" is no row: 3 alone is.
        choice.feed(&Typed::Char('3'));
        assert_eq!(choice.selected, 2);
        // "31" is no row either: 1 alone is.
        choice.feed(&Typed::Char('1'));
        assert_eq!(choice.selected, 0);
    }

    #[test]
    fn the_list_scrolls_to_keep_the_selection_in_view() {
        use crate::protocol::rdp::keyboard::Typed;
        let mut choice = offered(20);
        assert_eq!(choice.visible(), 0..CHOICE_ROWS);
        for _ in 0..10 {
            choice.feed(&Typed::Named("<Down>".into()));
        }
        let v = choice.visible();
        assert!(v.contains(&10) && v.len() == CHOICE_ROWS, "{v:?}");
        choice.feed(&Typed::Named("<Up>".into()));
        choice.feed(&Typed::Char('2'));
        choice.feed(&Typed::Char('0'));
        assert_eq!(choice.selected, 19);
        assert_eq!(choice.visible(), 12..20);
        assert_eq!(offered(3).visible(), 0..3);
    }

    #[test]
    fn asking_for_the_code_keeps_the_password_and_reads_only_the_code() {
        use crate::protocol::rdp::keyboard::Typed;
        let mut form = SignInForm::asking_code("tanaka@xrdp1", "pw".to_string().into());
        for c in "123456".chars() {
            form.feed(&Typed::Char(c));
        }
        assert_eq!(form.feed(&Typed::Enter), FormAction::Submit);
        assert_eq!(form.secret().as_str(), "pw123456");
        // A failure forgets the kept password too.
        form.failed("x", "y");
        assert_eq!(form.secret().as_str(), "");
    }

    #[test]
    fn the_choice_draws_the_selected_row_highlighted() {
        let Some(font) = font() else {
            eprintln!("skipped: font not installed");
            return;
        };
        let mut choice = offered(3);
        let first = choice.draw(&font, 1024, 768);
        choice.selected = 2;
        let third = choice.draw(&font, 1024, 768);
        let highlight = Rgb(0x2f, 0x5d, 0xa8);
        let (px, py, _, _) = SignInForm::panel(1024, 768);
        let count = |c: &Canvas, from: u16| {
            (from..from + 30)
                .filter(|&y| c.pixel(px + 40, y) == highlight)
                .count()
        };
        // Row n's band starts 22 px above its baseline at py + 100 + 32 n.
        let row = |n: u16| py + 100 + 32 * n - 22;
        assert!(count(&first, row(1)) >= 28, "row 1 not highlighted");
        assert_eq!(count(&first, row(3)), 0);
        assert!(count(&third, row(3)) >= 28, "row 3 not highlighted");
    }
}
