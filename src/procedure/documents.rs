//! Documents on file before remote work (書類): the vendor's maintenance
//! contract copy and each engineer's signed pledge (誓約書). A request whose
//! vendor has no contract copy in force for the whole window, or that names
//! an engineer without a pledge in force for it, cannot be approved
//! (`missing_documents` gives the reasons; `approve` refuses with them).
//!
//! Threat model: a document is evidence, so what is stored is exactly what
//! was given (its SHA-256 is kept and shown), limited in size so the
//! database cannot be filled by one upload, and only of the kinds an
//! official files (PDF or a scanned image), recognised by content, never by
//! the file name.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use super::ProcedureError;
use crate::store::{
    AuditEvent, AuditKind, DocumentFilter, DocumentKind, DocumentRecord, NewDocument, Role, Store,
    WorkRequest,
};

/// The largest document kept (a scanned contract is a few MiB).
pub const MAX_DOCUMENT_SIZE: usize = 10 * 1024 * 1024;

/// The file types kept, recognised by their first bytes.
pub fn media_type(content: &[u8]) -> Option<&'static str> {
    if content.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if content.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if content.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if content.starts_with(b"II*\0") || content.starts_with(b"MM\0*") {
        Some("image/tiff")
    } else {
        None
    }
}

/// A document as someone hands it in.
#[derive(Debug, Clone)]
pub struct Filing {
    pub kind: DocumentKind,
    /// The vendor (contract) or the engineer (pledge).
    pub holder: String,
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    pub file_name: String,
    pub content: Vec<u8>,
}

/// Who puts a document on file or reads one: an administrator (the CLI's
/// OS account) or a signed-in person; and through what, for the audit log.
#[derive(Debug, Clone)]
pub struct Clerk {
    pub name: String,
    pub via: String,
}

/// Checks and stores a document; audited as `document_added`. Only
/// administrators file documents (the caller checks the role).
pub async fn add(
    store: &Store,
    by: &Clerk,
    f: Filing,
    now: DateTime<Utc>,
) -> Result<DocumentRecord, ProcedureError> {
    let invalid = |m: String| Err(ProcedureError::Invalid(m));
    if f.valid_until < f.valid_from {
        return invalid(format!(
            "the document is valid until {} but from {}: the dates are the wrong way round",
            f.valid_until, f.valid_from
        ));
    }
    if f.content.is_empty() {
        return invalid(format!("{} is empty", f.file_name));
    }
    if f.content.len() > MAX_DOCUMENT_SIZE {
        return invalid(format!(
            "{} is {} bytes; documents on file are limited to {} MiB",
            f.file_name,
            f.content.len(),
            MAX_DOCUMENT_SIZE / (1024 * 1024)
        ));
    }
    let Some(media_type) = media_type(&f.content) else {
        return invalid(format!(
            "{} is neither a PDF nor an image (PNG, JPEG, TIFF); scan or print the signed document to PDF",
            f.file_name
        ));
    };
    let (vendor, user) = match f.kind {
        DocumentKind::Contract => {
            if store.vendor(&f.holder).await?.is_none() {
                return invalid(format!("no vendor {}", f.holder));
            }
            (Some(f.holder.clone()), None)
        }
        DocumentKind::Pledge => {
            let Some(u) = store.user(&f.holder).await? else {
                return invalid(format!("no user {}", f.holder));
            };
            if u.role != Role::Engineer {
                return invalid(format!(
                    "{} is not an engineer; pledges are signed by vendor engineers",
                    f.holder
                ));
            }
            (u.vendor.clone(), Some(f.holder.clone()))
        }
    };
    let sha256 = hex::encode(Sha256::digest(&f.content));
    let d = store
        .add_document(
            &NewDocument {
                kind: f.kind,
                vendor,
                user,
                valid_from: f.valid_from,
                valid_until: f.valid_until,
                file_name: f.file_name.clone(),
                media_type: media_type.into(),
                sha256,
                content: f.content,
                added_by: by.name.clone(),
            },
            now,
        )
        .await?;
    store
        .audit(
            &AuditEvent::new(
                AuditKind::DocumentAdded,
                format!(
                    "{} put the {} of {} on file ({} to {}, sha256 {})",
                    by.name,
                    d.kind,
                    d.holder(),
                    d.valid_from,
                    d.valid_until,
                    d.sha256
                ),
            )
            .user(&by.name)
            .with("via", by.via.as_str())
            .with("document", d.id.to_string())
            .with("kind", d.kind.as_str())
            .with("holder", d.holder())
            .with("sha256", d.sha256.as_str()),
        )
        .await?;
    Ok(d)
}

/// One document with its content, for showing or exporting; the reading
/// is audited (`document_read`), as every view of evidence is.
pub async fn read(
    store: &Store,
    by: &Clerk,
    id: uuid::Uuid,
) -> Result<(DocumentRecord, Vec<u8>), ProcedureError> {
    let Some((d, content)) = store.document(id).await? else {
        return Err(ProcedureError::Invalid(format!("no document {id}")));
    };
    store
        .audit(
            &AuditEvent::new(
                AuditKind::DocumentRead,
                format!("{} read the {} of {}", by.name, d.kind, d.holder()),
            )
            .user(&by.name)
            .with("via", by.via.as_str())
            .with("document", d.id.to_string()),
        )
        .await?;
    Ok((d, content))
}

/// The local calendar days a request's window covers.
pub fn window_days(r: &WorkRequest, tz: Tz) -> (NaiveDate, NaiveDate) {
    // The end instant is exclusive: a window ending at midnight ends on
    // the day before.
    let last = r.window_end - chrono::TimeDelta::microseconds(1);
    (
        r.window_start.with_timezone(&tz).date_naive(),
        last.max(r.window_start).with_timezone(&tz).date_naive(),
    )
}

/// Why the documents on file do not allow approving `r` (empty: they do).
pub async fn missing_documents(
    store: &Store,
    r: &WorkRequest,
    tz: Tz,
) -> Result<Vec<String>, ProcedureError> {
    let (from, until) = window_days(r, tz);
    let mut missing = Vec::new();
    let contracts = store
        .documents(&DocumentFilter {
            kind: Some(DocumentKind::Contract),
            vendor: Some(r.vendor.clone()),
            ..DocumentFilter::default()
        })
        .await?;
    if !contracts.iter().any(|d| d.covers(from, until)) {
        missing.push(match contracts.iter().map(|d| d.valid_until).max() {
            None => format!(
                "no maintenance contract copy (保守契約書) of vendor {} is on file",
                r.vendor
            ),
            Some(end) if end < until => format!(
                "the maintenance contract copy of vendor {} on file ends on {end}, before the window ends ({until})",
                r.vendor
            ),
            Some(_) => format!(
                "no maintenance contract copy of vendor {} on file covers {from} to {until}",
                r.vendor
            ),
        });
    }
    for e in &r.engineers {
        let pledges = store
            .documents(&DocumentFilter {
                kind: Some(DocumentKind::Pledge),
                user: Some(e.clone()),
                ..DocumentFilter::default()
            })
            .await?;
        if !pledges.iter().any(|d| d.covers(from, until)) {
            missing.push(if pledges.is_empty() {
                format!("engineer {e} has no signed pledge (誓約書) on file")
            } else {
                format!("no pledge of engineer {e} on file covers {from} to {until}")
            });
        }
    }
    Ok(missing)
}
