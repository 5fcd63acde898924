//! CSV as officials open it in Excel: CRLF line ends, RFC 4180 quoting, no
//! cell that Excel would run as a formula; UTF-8 with a byte-order mark by
//! default, or Shift_JIS (CP932) for older tools, refusing — with the
//! character named — text that CP932 cannot hold rather than writing `?`.

use super::ReportError;

/// The character encoding of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvEncoding {
    /// UTF-8 with a byte-order mark (Excel then reads it as UTF-8).
    #[default]
    Utf8Bom,
    /// Windows-31J / CP932 (Shift_JIS with the Microsoft extensions).
    Cp932,
}

/// A CSV document being written, as text.
#[derive(Debug, Default)]
pub struct Csv {
    text: String,
}

impl Csv {
    pub fn new() -> Csv {
        Csv::default()
    }

    /// One row; an empty slice writes an empty line (a block separator).
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        let line: Vec<String> = cells.iter().map(|c| cell(c.as_ref())).collect();
        self.text.push_str(&line.join(","));
        self.text.push_str("\r\n");
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The file's bytes in `encoding`.
    pub fn encode(&self, encoding: CsvEncoding) -> Result<Vec<u8>, ReportError> {
        encode(&self.text, encoding)
    }
}

/// `text` in `encoding`; for CP932, the first character it cannot hold is
/// an error naming it and its line.
pub fn encode(text: &str, encoding: CsvEncoding) -> Result<Vec<u8>, ReportError> {
    match encoding {
        CsvEncoding::Utf8Bom => {
            let mut out = Vec::with_capacity(text.len() + 3);
            out.extend_from_slice("\u{feff}".as_bytes());
            out.extend_from_slice(text.as_bytes());
            Ok(out)
        }
        CsvEncoding::Cp932 => {
            // encoding_rs's Shift_JIS encoder is the WHATWG one, which is
            // Windows-31J (CP932): NEC and IBM extensions included.
            if let Some((line, ch)) = text
                .lines()
                .enumerate()
                .find_map(|(i, l)| l.chars().find(|c| !cp932_holds(*c)).map(|c| (i + 1, c)))
            {
                return Err(ReportError::Unencodable {
                    ch,
                    line,
                    encoding: "CP932 (Shift_JIS)",
                });
            }
            let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(text);
            Ok(bytes.into_owned())
        }
    }
}

fn cp932_holds(c: char) -> bool {
    let mut enc = encoding_rs::SHIFT_JIS.new_encoder();
    let mut buf = [0u8; 8];
    let s = c.to_string();
    let (result, _, _) = enc.encode_from_utf8_without_replacement(&s, &mut buf, true);
    matches!(result, encoding_rs::EncoderResult::InputEmpty)
}

/// One CSV field: quoted when it holds a comma, quote or line break, and
/// prefixed with `'` when it starts with a character a spreadsheet would
/// take as a formula.
pub fn cell(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@']);
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_for_excel() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        // A typed line must not become a formula in Excel.
        assert_eq!(cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(cell("-rf"), "'-rf");
        assert_eq!(cell("日本語"), "日本語");
    }

    #[test]
    fn utf8_has_a_bom_and_crlf() {
        let mut c = Csv::new();
        c.row(&["作業", "1"]);
        let b = c.encode(CsvEncoding::Utf8Bom).unwrap();
        assert_eq!(b, "\u{feff}作業,1\r\n".as_bytes());
    }

    #[test]
    fn cp932_encodes_japanese_and_the_microsoft_extensions() {
        let mut c = Csv::new();
        // ① and ㈱ are NEC special characters; 髙 is an IBM extension.
        c.row(&["月次利用報告", "①", "㈱", "髙橋", "~\\"]);
        let b = c.encode(CsvEncoding::Cp932).unwrap();
        let (back, _, bad) = encoding_rs::SHIFT_JIS.decode(&b);
        assert!(!bad);
        assert_eq!(back, "月次利用報告,①,㈱,髙橋,~\\\r\n");
        assert_eq!(&b[..2], &[0x8C, 0x8E]); // 月
    }

    #[test]
    fn cp932_names_the_character_it_cannot_hold() {
        let mut c = Csv::new();
        c.row(&["ok"]);
        c.row(&["𠮷野家 😀"]);
        match c.encode(CsvEncoding::Cp932) {
            Err(ReportError::Unencodable { ch, line, .. }) => {
                assert_eq!(ch, '𠮷');
                assert_eq!(line, 2);
            }
            other => panic!("expected Unencodable, got {other:?}"),
        }
    }
}
