//! Static files, embedded in the binary (see `assets/README.md` for their
//! origin, licence and checksums). A page works without any network access
//! beyond the bastion.

use axum::extract::Path;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::page::Refused;

/// (name, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "sekisho.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/sekisho.css"),
    ),
    (
        "sekisho-replay.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/sekisho-replay.js"),
    ),
    (
        "sekisho-desktop.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/sekisho-desktop.js"),
    ),
    (
        "sekisho-desktop.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/sekisho-desktop.css"),
    ),
    (
        "asciinema-player.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/asciinema-player.min.js"),
    ),
    (
        "asciinema-player.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/asciinema-player.css"),
    ),
    (
        "asciinema-player.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("assets/asciinema-player.LICENSE"),
    ),
];

/// GET /assets/{name}
pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => {
            let mut resp = bytes.into_response();
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            // Assets change only with the binary.
            h.insert(
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            resp
        }
        None => Refused::NotFound.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn checksums_match_the_readme() {
        let readme = include_str!("assets/README.md");
        for (name, _, bytes) in ASSETS {
            let sum = hex::encode(sha2::Sha256::digest(bytes));
            assert!(
                readme.contains(&format!("{sum}  {name}")),
                "assets/README.md lacks `{sum}  {name}`"
            );
        }
    }
}
