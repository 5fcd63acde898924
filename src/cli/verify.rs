//! `sekisho verify FILE|SESSION-ID`: is this recording intact evidence?
//!
//! Exit codes: 0 intact, 3 incomplete, 4 tampered, 5 bad or unknown
//! signature, 2 usage or I/O error.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::Global;
use crate::recording::{self, PublicKey, Verdict};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A recording file, or a session id looked up under the recordings directory.
    pub target: String,
    /// Trust this public key (PEM); repeatable. Without it, the keys next to
    /// the configured archive signing key are used.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &Global, a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let as_file = Path::new(&a.target);
    let (path, keys) = if as_file.is_file() && !a.public_keys.is_empty() {
        (as_file.to_owned(), load_keys(&a.public_keys)?)
    } else {
        if !g.config.exists() {
            // Away from the bastion (an auditor with a copied archive) there
            // is no configuration, and none is needed: only the public key.
            if as_file.is_file() {
                anyhow::bail!(
                    "no configuration at {} to find the archive-signing public key: pass it with --public-key FILE \
                     (archive_signing_ed25519.pub from the bastion's keys/ directory), e.g. \
                     `sekisho verify {} --public-key archive_signing_ed25519.pub`",
                    g.config.display(),
                    a.target
                );
            }
            anyhow::bail!(
                "{} is not a file, and there is no configuration at {} to look a session ID up in: \
                 give the recording's path with --public-key FILE, or pass --config FILE on the bastion",
                a.target,
                g.config.display()
            );
        }
        let config = super::load_config(g)?;
        let path = if as_file.is_file() {
            as_file.to_owned()
        } else {
            find_session(&config.paths.recordings, &a.target)?
        };
        let keys = if a.public_keys.is_empty() {
            configured_keys(&config.paths.archive_signing_key())?
        } else {
            load_keys(&a.public_keys)?
        };
        (path, keys)
    };
    let report = tokio::task::spawn_blocking(move || recording::verify_file(&path, &keys))
        .await
        .context("verify task")??;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}: {}", report.path, describe(&report.verdict));
    }
    Ok(ExitCode::from(report.verdict.exit_code()))
}

fn load_keys(files: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    files
        .iter()
        .map(|f| {
            recording::load_public_key(f).with_context(|| format!("public key {}", f.display()))
        })
        .collect()
}

/// The keys of this deployment (`recording::trusted_keys`), with a hint.
fn configured_keys(private: &Path) -> anyhow::Result<Vec<PublicKey>> {
    recording::trusted_keys(private).map_err(|e| match e {
        recording::KeyError::NoPublicKey { .. } => {
            anyhow::anyhow!("{e} (pass --public-key FILE)")
        }
        e => anyhow::Error::new(e),
    })
}

/// Finds `<recordings>/YYYY/MM/DD/<id>.skrec` without the store.
pub(super) fn find_session(root: &Path, id: &str) -> anyhow::Result<PathBuf> {
    if id.contains('/') || id.starts_with('.') || id.is_empty() {
        anyhow::bail!("{id}: no such file, and not a session id");
    }
    let mut found = Vec::new();
    let mut stack = vec![(root.to_owned(), 0u8)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir == root => {
                return Err(e).with_context(|| format!("reading {}", root.display()));
            }
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth < 4 {
                stack.push((path, depth + 1));
            } else if kind.is_file()
                && path.file_stem().is_some_and(|s| s == id)
                && path.extension().is_some_and(|e| e == recording::EXTENSION)
            {
                found.push(path);
            }
        }
    }
    match found.len() {
        0 => anyhow::bail!("no recording for session {id} under {}", root.display()),
        1 => Ok(found.remove(0)),
        _ => anyhow::bail!("several recordings for session {id}: {found:?}"),
    }
}

fn seconds(us: u64) -> String {
    format!("{}.{:06}s", us / 1_000_000, us % 1_000_000)
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Intact {
            key_id,
            chunks,
            events,
            duration_us,
            ..
        } => format!(
            "intact ({events} events in {chunks} chunks, {}; signed by key {key_id})",
            seconds(*duration_us)
        ),
        Verdict::Incomplete {
            sound_until_us,
            reason,
            ..
        } => match sound_until_us {
            Some(t) => format!("incomplete: sound up to {} ({reason})", seconds(*t)),
            None => format!("incomplete: no whole chunk ({reason})"),
        },
        Verdict::Tampered {
            region,
            chunk,
            offset,
            detail,
        } => match chunk {
            Some(c) => format!("TAMPERED in chunk {c} at byte {offset}: {detail}"),
            None => format!(
                "TAMPERED in the {} at byte {offset}: {detail}",
                region.as_str()
            ),
        },
        Verdict::BadSignature { key_id } => format!("BAD SIGNATURE (claims key {key_id})"),
        Verdict::UnknownSignature { key_id } => {
            format!("UNKNOWN SIGNATURE: signed by key {key_id}, which is not trusted here")
        }
    }
}
