//! Human tables: every column as wide as its widest cell, two spaces apart,
//! so columns line up whatever the data (long lock times, long names).

use std::io::Write;

/// Writes `header` and `rows` as aligned columns; the last column is not
/// padded (no trailing blanks).
pub fn write<const N: usize>(
    out: &mut impl Write,
    header: &[String; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = w - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let header = ["NAME", "LOCKED", "KEYS"].map(String::from);
        let rows = [
            ["tanaka", "until 2026-04-01 08:30:00 JST", "1"].map(String::from),
            ["a-much-longer-name", "no", "12"].map(String::from),
        ];
        let mut out = Vec::new();
        super::write(&mut out, &header, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let locked = lines[0].find("LOCKED").unwrap();
        let keys = lines[0].find("KEYS").unwrap();
        assert!(lines[1][locked..].starts_with("until"), "{text}");
        assert!(lines[2][locked..].starts_with("no "), "{text}");
        assert_eq!(&lines[1][keys..], "1", "{text}");
        assert_eq!(&lines[2][keys..], "12", "{text}");
    }
}
