//! Rows for vendor organisations and the subcontracting chain between them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_micros, is_unique_violation, to_micros};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorRecord {
    pub name: String,
    /// The vendor this one works under as a subcontractor.
    pub parent: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Adds a vendor, optionally as a subcontractor of an existing one.
    pub async fn add_vendor(&self, name: &str, parent: Option<&str>) -> Result<(), StoreError> {
        if let Some(p) = parent {
            if p == name {
                return Err(StoreError::VendorCycle {
                    vendor: name.into(),
                    parent: p.into(),
                });
            }
            if self.vendor(p).await?.is_none() {
                return Err(StoreError::NoVendor(p.into()));
            }
        }
        sqlx::query("INSERT INTO vendors (name, parent, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(parent)
            .bind(to_micros(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::VendorExists(name.into())
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    /// Makes `vendor` a subcontractor of `parent` (or of no one), refusing cycles.
    pub async fn set_vendor_parent(
        &self,
        vendor: &str,
        parent: Option<&str>,
    ) -> Result<(), StoreError> {
        if self.vendor(vendor).await?.is_none() {
            return Err(StoreError::NoVendor(vendor.into()));
        }
        if let Some(p) = parent {
            if self.vendor(p).await?.is_none() {
                return Err(StoreError::NoVendor(p.into()));
            }
            if self.vendor_chain(p).await?.iter().any(|v| v == vendor) {
                return Err(StoreError::VendorCycle {
                    vendor: vendor.into(),
                    parent: p.into(),
                });
            }
        }
        sqlx::query("UPDATE vendors SET parent = $1 WHERE name = $2")
            .bind(parent)
            .bind(vendor)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn vendor(&self, name: &str) -> Result<Option<VendorRecord>, StoreError> {
        let row = sqlx::query("SELECT name, parent, created_at FROM vendors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| vendor_from_row(&r)).transpose()
    }

    pub async fn vendors(&self) -> Result<Vec<VendorRecord>, StoreError> {
        let rows = sqlx::query("SELECT name, parent, created_at FROM vendors ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(vendor_from_row).collect()
    }

    /// The vendor itself first, then the vendors it works under, nearest first.
    /// A cycle (only possible by editing the database by hand) ends the chain.
    pub async fn vendor_chain(&self, vendor: &str) -> Result<Vec<String>, StoreError> {
        let mut chain = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(vendor.to_string());
        while let Some(name) = next {
            if !seen.insert(name.clone()) {
                tracing::warn!(vendor, "vendor chain has a cycle at {name}; cut there");
                break;
            }
            let Some(v) = self.vendor(&name).await? else {
                if chain.is_empty() {
                    return Err(StoreError::NoVendor(name));
                }
                break;
            };
            chain.push(v.name);
            next = v.parent;
        }
        Ok(chain)
    }
}

fn vendor_from_row(r: &sqlx::any::AnyRow) -> Result<VendorRecord, StoreError> {
    Ok(VendorRecord {
        name: r.try_get("name")?,
        parent: r.try_get("parent")?,
        created_at: from_micros(r.try_get("created_at")?)?,
    })
}
