//! Where a problem is: byte spans of the TOML text turned into 1-based lines
//! and a best guess at the dotted field, collected per file by [`Sink`].

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use super::PolicyError;

/// Collects errors for one file, turning byte spans into lines.
pub(super) struct Sink<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    pub(super) errors: &'a mut Vec<PolicyError>,
}

impl Sink<'_> {
    pub(super) fn line_of(&self, span: &Range<usize>) -> usize {
        line_of(self.text, span.start)
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

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
        + 1
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
