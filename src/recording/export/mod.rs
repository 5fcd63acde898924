//! Exports of terminal recordings into formats auditors already open:
//! asciicast v2 (`asciinema play`) and a plain keystroke log. Pure functions
//! over decoded events, so they work on sealed and cut-short archives alike.

pub mod asciicast;
pub mod keystrokes;

/// An export could not be written or the archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Read(#[from] super::ReadError),
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
}
