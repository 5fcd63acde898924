//! Offline: everything that turns a recording archive into something a
//! person watches or reads, by medium.
//!
//! - [`terminal`]: SSH sessions — asciicast v2, the keystroke log, paced
//!   playback in a terminal.
//! - [`desktop`]: RDP sessions — the framebuffer replay, PNG, MP4, the
//!   keystroke log, and the frame stream a web player draws from.
//!
//! Depends only on the archive reader (`recording`) and on pure protocol
//! decoding (`protocol`). The live gateways (`ssh/`, `rdp/`) never import
//! this module (checked by the test below): a gateway relays and records,
//! it does not replay. Everything here works on sealed and cut-short archives
//! alike.

pub mod desktop;
pub mod keylog;
pub mod terminal;

/// An export could not be written or the archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Read(#[from] crate::recording::ReadError),
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `.rs` file under `src/DIR`, with its text.
    fn sources(dir: &str) -> Vec<(String, String)> {
        fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .expect("source directory")
                .map(|e| e.expect("entry").path())
                .collect();
            entries.sort();
            for path in entries {
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source file");
                    out.push((path.display().to_string(), text));
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir),
            &mut out,
        );
        assert!(!out.is_empty(), "no sources under src/{dir}");
        out
    }

    /// Files under `src/DIR` that name any of `forbidden` (the paths are
    /// spelt with `concat!` so that this file does not name them itself).
    fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
        sources(dir)
            .into_iter()
            .flat_map(|(path, text)| {
                forbidden
                    .iter()
                    .filter(|f| text.contains(*f))
                    .map(|f| format!("{path} names {f}"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_gateways_never_import_offline_code() {
        for gateway in ["ssh", "rdp"] {
            assert_eq!(
                offenders(
                    gateway,
                    &[concat!("crate", "::replay"), concat!("super", "::replay")]
                ),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn replay_reads_archives_and_pure_decoding_only() {
        assert_eq!(
            offenders(
                "replay",
                &[
                    concat!("crate", "::rdp::"),
                    concat!("crate", "::ssh::"),
                    concat!("crate", "::session::"),
                ]
            ),
            Vec::<String>::new()
        );
        // The shared protocol decoding is pure: no archive, no gateway.
        assert_eq!(
            offenders(
                "protocol",
                &[
                    concat!("crate", "::recording"),
                    concat!("crate", "::replay"),
                    concat!("crate", "::rdp::"),
                    concat!("crate", "::ssh::"),
                ]
            ),
            Vec::<String>::new()
        );
    }
}
