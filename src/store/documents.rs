//! Documents on file (書類): a vendor's maintenance contract copy and each
//! engineer's signed pledge (誓約書), kept whole in the database with their
//! SHA-256 and validity dates. What may be stored (size, file type) is
//! checked in `procedure::documents`; a document is never edited, a newer
//! one is added beside it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError, from_micros, parse_uuid, to_micros};

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// A copy of the maintenance contract (保守契約書の写し), per vendor.
    Contract,
    /// An engineer's signed pledge (誓約書).
    Pledge,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Contract => "contract",
            DocumentKind::Pledge => "pledge",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            DocumentKind::Contract => "保守契約書",
            DocumentKind::Pledge => "誓約書",
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DocumentKind {
    type Err = String;
    fn from_str(s: &str) -> Result<DocumentKind, String> {
        match s.trim() {
            "contract" => Ok(DocumentKind::Contract),
            "pledge" => Ok(DocumentKind::Pledge),
            other => Err(format!(
                "unknown document kind {other:?} (contract or pledge)"
            )),
        }
    }
}

/// A document to store; `content` has been checked.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub kind: DocumentKind,
    pub vendor: Option<String>,
    pub user: Option<String>,
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    pub file_name: String,
    pub media_type: String,
    pub sha256: String,
    pub content: Vec<u8>,
    pub added_by: String,
}

/// A stored document without its content (listings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    pub id: Uuid,
    pub kind: DocumentKind,
    pub vendor: Option<String>,
    pub user: Option<String>,
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    pub file_name: String,
    pub media_type: String,
    pub size: u64,
    pub sha256: String,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
}

impl DocumentRecord {
    /// Whether it is in force on every day from `from` to `until`.
    pub fn covers(&self, from: NaiveDate, until: NaiveDate) -> bool {
        self.valid_from <= from && until <= self.valid_until
    }

    /// Whom it is about: the vendor or the engineer.
    pub fn holder(&self) -> &str {
        self.user
            .as_deref()
            .or(self.vendor.as_deref())
            .unwrap_or_default()
    }
}

/// Which documents `documents` lists; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct DocumentFilter {
    pub kind: Option<DocumentKind>,
    pub vendor: Option<String>,
    pub user: Option<String>,
}

const COLUMNS: &str = "id, kind, vendor, user_name, valid_from, valid_until, file_name, media_type,
    size, sha256, added_by, added_at";

impl Store {
    pub async fn add_document(
        &self,
        d: &NewDocument,
        at: DateTime<Utc>,
    ) -> Result<DocumentRecord, StoreError> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO documents (id, kind, vendor, user_name, valid_from, valid_until, file_name,
                 media_type, size, sha256, content, added_by, added_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(id.to_string())
        .bind(d.kind.as_str())
        .bind(d.vendor.as_deref())
        .bind(d.user.as_deref())
        .bind(d.valid_from.to_string())
        .bind(d.valid_until.to_string())
        .bind(d.file_name.as_str())
        .bind(d.media_type.as_str())
        .bind(i64::try_from(d.content.len()).unwrap_or(i64::MAX))
        .bind(d.sha256.as_str())
        .bind(d.content.as_slice())
        .bind(d.added_by.as_str())
        .bind(to_micros(at))
        .execute(&self.pool)
        .await?;
        self.document(id)
            .await?
            .map(|(r, _)| r)
            .ok_or(StoreError::NoDocument(id.to_string()))
    }

    /// Documents matching the filter, oldest first.
    pub async fn documents(&self, f: &DocumentFilter) -> Result<Vec<DocumentRecord>, StoreError> {
        let mut c = super::Conditions::default();
        if let Some(k) = f.kind {
            c.push("kind =", super::Bind::Text(k.as_str().into()));
        }
        if let Some(v) = &f.vendor {
            c.push("vendor =", super::Bind::Text(v.clone()));
        }
        if let Some(u) = &f.user {
            c.push("user_name =", super::Bind::Text(u.clone()));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM documents{} ORDER BY added_at, id",
            c.where_clause()
        );
        let rows = c.bind_all(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter().map(document_from_row).collect()
    }

    /// One document with its content.
    pub async fn document(
        &self,
        id: Uuid,
    ) -> Result<Option<(DocumentRecord, Vec<u8>)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, content FROM documents WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((document_from_row(&r)?, r.try_get("content")?))),
        }
    }
}

fn document_from_row(r: &sqlx::any::AnyRow) -> Result<DocumentRecord, StoreError> {
    let corrupt = |what: &'static str, value: String| StoreError::Corrupt { what, value };
    let id: String = r.try_get("id")?;
    let kind: String = r.try_get("kind")?;
    let from: String = r.try_get("valid_from")?;
    let until: String = r.try_get("valid_until")?;
    let size: i64 = r.try_get("size")?;
    Ok(DocumentRecord {
        id: parse_uuid(&id)?,
        kind: kind.parse().map_err(|_| corrupt("document kind", kind))?,
        vendor: r.try_get("vendor")?,
        user: r.try_get("user_name")?,
        valid_from: from
            .parse()
            .map_err(|_| corrupt("document date", from.clone()))?,
        valid_until: until
            .parse()
            .map_err(|_| corrupt("document date", until.clone()))?,
        file_name: r.try_get("file_name")?,
        media_type: r.try_get("media_type")?,
        size: u64::try_from(size).map_err(|_| corrupt("document size", size.to_string()))?,
        sha256: r.try_get("sha256")?,
        added_by: r.try_get("added_by")?,
        added_at: from_micros(r.try_get("added_at")?)?,
    })
}
