//! `sekisho document …`: documents on file before remote work — a vendor's
//! maintenance contract copy (保守契約書) and each engineer's signed pledge
//! (誓約書). Kept whole in the database with their SHA-256; approval of a
//! request is refused while they do not cover its window.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};

use super::Global;
use super::user::{local_time, open};
use crate::procedure::documents::{self, Clerk, Filing};
use crate::store::{DocumentFilter, DocumentKind};

#[derive(Debug, clap::Subcommand)]
pub enum DocumentCmd {
    /// Put a document on file: a PDF or a scanned image (PNG, JPEG, TIFF),
    /// at most 10 MiB.
    Add {
        /// contract (per vendor) or pledge (per engineer).
        #[arg(long, value_parser = parse_kind)]
        kind: DocumentKind,
        /// The vendor whose contract this is.
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        vendor: Option<String>,
        /// The engineer who signed this pledge.
        #[arg(long)]
        user: Option<String>,
        /// First day in force, YYYY-MM-DD.
        #[arg(long)]
        valid_from: NaiveDate,
        /// Last day in force, YYYY-MM-DD.
        #[arg(long)]
        valid_until: NaiveDate,
        file: PathBuf,
    },
    /// List documents on file (without their content).
    List {
        #[arg(long, value_parser = parse_kind)]
        kind: Option<DocumentKind>,
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Write a document's content to FILE (audited), and print its details.
    Export {
        id: uuid::Uuid,
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
}

fn parse_kind(s: &str) -> Result<DocumentKind, String> {
    s.parse()
}

fn clerk() -> Clerk {
    let os = crate::auth::admin_actor();
    Clerk {
        name: os.clone(),
        via: format!("cli (os user {os})"),
    }
}

pub async fn run(g: &Global, cmd: DocumentCmd) -> anyhow::Result<ExitCode> {
    let (cfg, store) = open(g).await?;
    match cmd {
        DocumentCmd::Add {
            kind,
            vendor,
            user,
            valid_from,
            valid_until,
            file,
        } => {
            let holder = match (kind, vendor, user) {
                (DocumentKind::Contract, Some(v), None) => v,
                (DocumentKind::Pledge, None, Some(u)) => u,
                (DocumentKind::Contract, _, _) => {
                    anyhow::bail!("a contract is filed per vendor: give --vendor V")
                }
                (DocumentKind::Pledge, _, _) => {
                    anyhow::bail!("a pledge is filed per engineer: give --user U")
                }
            };
            // Read no more than the limit allows (plus one byte to tell).
            let content = read_limited(&file, documents::MAX_DOCUMENT_SIZE)?;
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.display().to_string());
            let d = documents::add(
                &store,
                &clerk(),
                Filing {
                    kind,
                    holder,
                    valid_from,
                    valid_until,
                    file_name,
                    content,
                },
                Utc::now(),
            )
            .await?;
            println!("{}", d.id);
            println!(
                "{} of {} on file, in force {} to {}, {} ({} bytes), sha256 {}",
                d.kind,
                d.holder(),
                d.valid_from,
                d.valid_until,
                d.media_type,
                d.size,
                d.sha256
            );
        }
        DocumentCmd::List { kind, vendor, user } => {
            let list = store
                .documents(&DocumentFilter { kind, vendor, user })
                .await?;
            if list.is_empty() {
                println!("no documents on file");
            } else {
                println!(
                    "{:<36}  {:<8}  {:<12}  {:<10}  {:<10}  {:<16}  {:<64}  FILE",
                    "ID", "KIND", "HOLDER", "FROM", "UNTIL", "ADDED", "SHA256"
                );
                for d in list {
                    println!(
                        "{:<36}  {:<8}  {:<12}  {:<10}  {:<10}  {:<16}  {:<64}  {}",
                        d.id,
                        d.kind.as_str(),
                        d.holder(),
                        d.valid_from,
                        d.valid_until,
                        local_time(&cfg, d.added_at),
                        d.sha256,
                        d.file_name
                    );
                }
            }
        }
        DocumentCmd::Export { id, output } => {
            let (d, content) = documents::read(&store, &clerk(), id).await?;
            super::report::write_whole(&output, &content)?;
            println!(
                "{} of {} ({}, {} bytes, sha256 {}) written to {}",
                d.kind,
                d.holder(),
                d.media_type,
                d.size,
                d.sha256,
                output.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_limited(path: &std::path::Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut content = Vec::new();
    f.take(u64::try_from(limit).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut content)
        .with_context(|| format!("reading {}", path.display()))?;
    if content.len() > limit {
        anyhow::bail!(
            "{} is larger than {} MiB, the limit for documents on file",
            path.display(),
            limit / (1024 * 1024)
        );
    }
    Ok(content)
}
