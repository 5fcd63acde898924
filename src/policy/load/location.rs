//! Where a problem is: byte spans of the TOML text turned into 1-based lines
//! and a best guess at the dotted field, collected per file by [`Sink`].
//!
//! Every target, hop and access entry asks for lines, so a lookup must not
//! rescan the text: the line starts are indexed once per file and each
//! lookup is a binary search (10 000 targets used to take minutes).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use super::PolicyError;

/// Collects errors for one file, turning byte spans into lines.
pub(super) struct Sink<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    lines: LineIndex,
    pub(super) errors: &'a mut Vec<PolicyError>,
}

impl<'a> Sink<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str, errors: &'a mut Vec<PolicyError>) -> Self {
        Sink {
            file,
            text,
            lines: LineIndex::new(text),
            errors,
        }
    }

    pub(super) fn line_of(&self, span: &Range<usize>) -> usize {
        self.lines.line_of(span.start)
    }

    pub(super) fn err(
        &mut self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: String,
    ) {
        let line = span.map(|s| self.line_of(&s));
        self.errors.push(PolicyError {
            file: self.file.to_path_buf(),
            line,
            field: field.into(),
            message,
        });
    }
}

/// The byte offset at which each line of a text starts.
struct LineIndex {
    /// Offsets just after each `\n`, in order; line 1 (offset 0) is implied.
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        LineIndex { starts }
    }

    /// The 1-based line holding `offset` (past the end: the last line).
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset) + 1
    }
}

/// A best guess at the dotted field a parser error points to: the table
/// header above it, then the keys on its line.
pub(super) fn field_at(text: &str, span: &Range<usize>) -> String {
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut header = String::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in before.get(..line_start).unwrap_or("").lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("[[") {
            let name = rest.split("]]").next().unwrap_or("").trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            header = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(rest) = t.strip_prefix('[') {
            header = rest.split(']').next().unwrap_or("").trim().to_string();
        }
    }
    let mut parts: Vec<String> = Vec::new();
    if !header.is_empty() {
        parts.push(header);
    }
    let prefix = before.get(line_start..).unwrap_or("");
    let segments: Vec<&str> = prefix.split('=').collect();
    for seg in segments.iter().take(segments.len().saturating_sub(1)) {
        let key = seg.rsplit(['{', ',']).next().unwrap_or("").trim();
        if is_bare_key(key) {
            parts.push(key.to_string());
        }
    }
    let at = text.get(span.clone()).unwrap_or("").trim();
    // The span is a key (e.g. an unknown field) when `=` follows it.
    let is_key = text
        .get(span.end..)
        .is_some_and(|rest| rest.trim_start().starts_with('='));
    if is_bare_key(at) && is_key {
        parts.push(at.to_string());
    }
    parts.join(".")
}

fn is_bare_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    /// The line of every offset, counted the slow way: newlines before it.
    fn counted(text: &str, offset: usize) -> usize {
        text.as_bytes()
            .iter()
            .take(offset)
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    #[test]
    fn line_index_agrees_with_counting_newlines() {
        for text in [
            "",
            "a",
            "\n",
            "a\nb",
            "a\n\nb\n",
            "[x]\nname = \"財務\"\n\nk = 1",
        ] {
            let index = LineIndex::new(text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    index.line_of(offset),
                    counted(text, offset),
                    "{text:?} at {offset}"
                );
            }
        }
    }
}
