//! Reports computed from what sekisho recorded: the work report of a work
//! request (`work`) and the monthly usage report (`monthly`), as CSV for
//! Excel (`csv`) and PDF (`pdf`). Offline code, like `replay/`: the
//! gateways never import it.

pub mod csv;
pub mod monthly;
pub mod pdf;
pub mod work;

pub use csv::CsvEncoding;
pub use pdf::{PdfError, ReportFont};
pub use work::WorkReport;

use crate::store::StoreError;

/// Errors while drafting or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the report: {0}")]
    Write(#[from] std::io::Error),
    #[error(transparent)]
    Pdf(#[from] PdfError),
    /// The text holds a character the chosen encoding cannot.
    #[error(
        "line {line} holds {ch:?} (U+{:04X}), which {encoding} cannot represent; use the default UTF-8 encoding",
        *ch as u32
    )]
    Unencodable {
        ch: char,
        line: usize,
        encoding: &'static str,
    },
    /// The report was asked for in a way that cannot be answered.
    #[error("{0}")]
    Invalid(String),
}
