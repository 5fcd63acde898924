//! Loading and checking `policies/*.toml`. Every problem found is reported
//! with file, line and field; a set with any error is not loaded at all, so a
//! half-understood policy never grants anything.
//!
//! The steps, one file each: `schema` is the TOML as written, `location`
//! turns byte spans into lines and dotted fields, `file` checks one file
//! (`endpoint` a target's ssh/rdp endpoint with its credential and pin,
//! `access` one access entry, `approval` the work-request approval route), and `cross` checks across files.

mod access;
mod approval;
mod cross;
mod endpoint;
mod file;
mod location;
mod schema;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::PolicySet;
use crate::config::Network;
use location::Sink;

/// The longest `max_session` a policy may give: a session should last no
/// longer than the work needs.
pub const MAX_SESSION_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `target[1].ssh.host_key`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found; `Display` gives one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// ---- loading -------------------------------------------------------------

impl PolicySet {
    /// Loads every `*.toml` in `dir` (in name order). `known_credentials`
    /// `None` skips checking credential names.
    pub fn load_dir(
        dir: &Path,
        networks: &[Network],
        known_credentials: Option<&BTreeSet<String>>,
    ) -> Result<PolicySet, PolicyErrors> {
        PolicySet::load_dir_with(dir, Some(networks), known_credentials)
    }

    /// As `load_dir`; `networks` `None` means the networks are not known
    /// (no `sekisho.toml`), so network names in `sources` are not checked.
    pub fn load_dir_with(
        dir: &Path,
        networks: Option<&[Network]>,
        known_credentials: Option<&BTreeSet<String>>,
    ) -> Result<PolicySet, PolicyErrors> {
        let (files, errors) = read_dir_texts(dir)?;
        parse_with_read_errors(&files, errors, networks, known_credentials)
    }

    /// Checks the set `dir` would hold with `text` as the file `path` (new
    /// or replacing the file there): what an edit would leave in force,
    /// checked exactly as `load_dir` checks the directory, before anything
    /// is written.
    pub fn load_dir_replacing(
        dir: &Path,
        networks: &[Network],
        known_credentials: Option<&BTreeSet<String>>,
        path: &Path,
        text: &str,
    ) -> Result<PolicySet, PolicyErrors> {
        let (mut files, mut errors) = read_dir_texts(dir)?;
        errors.retain(|e| e.file != path);
        files.retain(|(p, _)| p != path);
        files.push((path.to_path_buf(), text.to_string()));
        files.sort_by(|a, b| a.0.cmp(&b.0));
        parse_with_read_errors(&files, errors, Some(networks), known_credentials)
    }

    /// Parses and checks policy texts as if read from the given paths.
    pub fn parse_files(
        files: &[(PathBuf, String)],
        networks: Option<&[Network]>,
        known_credentials: Option<&BTreeSet<String>>,
    ) -> Result<PolicySet, PolicyErrors> {
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        for (path, text) in files {
            let mut sink = Sink::new(path, text, &mut errors);
            if let Some(p) = file::parse_file(&mut sink, networks, known_credentials) {
                parsed.push(p);
            }
        }
        let set = cross::cross_check(parsed, &mut errors);
        // Read in file order, top to bottom.
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(PolicyErrors(errors))
        }
    }
}

/// Policy files read: each path with its text, and the errors of those that
/// could not be read.
type Texts = (Vec<(PathBuf, String)>, Vec<PolicyError>);

/// The texts of every policy file in `dir` (`*.toml`, not hidden, in name
/// order), and the errors of those that cannot be read.
fn read_dir_texts(dir: &Path) -> Result<Texts, PolicyErrors> {
    let dir_error = |message: String| {
        PolicyErrors(vec![PolicyError {
            file: dir.to_path_buf(),
            line: None,
            field: String::new(),
            message,
        }])
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| dir_error(format!("cannot read the policy directory: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| dir_error(format!("cannot read the policy directory: {e}")))?;
        let path = entry.path();
        // Editors' lock and backup files (`.#fa.toml`) are not policies.
        let hidden = entry.file_name().as_encoded_bytes().starts_with(b".");
        if path.extension().is_some_and(|x| x == "toml") && !hidden {
            paths.push(path);
        }
    }
    paths.sort();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match read_policy_file(&path) {
            Ok(text) => files.push((path, text)),
            Err((line, message)) => errors.push(PolicyError {
                file: path,
                line,
                field: String::new(),
                message,
            }),
        }
    }
    Ok((files, errors))
}

/// Parses `files`; the set is loaded only if neither they nor the reading
/// (`errors`) had a problem.
fn parse_with_read_errors(
    files: &[(PathBuf, String)],
    mut errors: Vec<PolicyError>,
    networks: Option<&[Network]>,
    known_credentials: Option<&BTreeSet<String>>,
) -> Result<PolicySet, PolicyErrors> {
    match PolicySet::parse_files(files, networks, known_credentials) {
        Ok(set) if errors.is_empty() => Ok(set),
        Ok(_) => Err(PolicyErrors(errors)),
        Err(PolicyErrors(more)) => {
            errors.extend(more);
            Err(PolicyErrors(errors))
        }
    }
}

/// The text of one policy file. A `*.toml` that cannot be read (a dangling
/// link, a link loop, a directory, text that is not UTF-8) is an error, with
/// the line and column of the first bad byte where there is one: a file the
/// administrator meant as policy is never silently left out.
fn read_policy_file(path: &Path) -> Result<String, (Option<usize>, String)> {
    let meta = std::fs::metadata(path).map_err(|e| (None, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err((None, "cannot read: not a regular file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| (None, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let good = e.utf8_error().valid_up_to();
        let before = bytes.get(..good).unwrap_or_default();
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        // Columns count characters; everything before the bad byte is UTF-8.
        let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
            .chars()
            .count()
            + 1;
        (
            Some(line),
            format!("not UTF-8 text: invalid byte at column {column} (byte offset {good})"),
        )
    })
}

#[cfg(test)]
mod tests;
