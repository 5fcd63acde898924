//! Editing one system's policy file in the console (admins only).
//!
//! The file on disk stays the source of truth; the console is a safer
//! editor for it:
//! - Every proposed text is checked with the loader's own checks over the
//!   whole directory with the new file in place
//!   (`PolicySet::load_dir_replacing`: what `sekisho policy check` and the
//!   reload do), with each error's line and field, before anything is
//!   written; an invalid set is never saved.
//! - The diff against the file is shown before saving; the save form carries
//!   exactly the text that was reviewed.
//! - Saving asks for a fresh one-time code, like the kill button.
//! - No lost update: the form carries the SHA-256 of the file as it was
//!   read; a save whose base no longer matches the file is refused.
//! - The file is replaced atomically (a hidden temporary file in the same
//!   directory, fsync, rename, fsync of the directory), then the policy set
//!   is reloaded as for any file change, and the edit is an `admin_change`
//!   audit event naming the admin and holding the diff.
//! - The common changes (add an engineer, move the contract's end, change
//!   the hours) are TOML edits (`policy::edit`) that go through the same
//!   review and save.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use axum::extract::{Form, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::Digest as _;

use super::Shared;
use super::diff::{DiffLine, hunks, line_diff, unified};
use super::i18n::Lang;
use super::page::{Refused, esc, layout, url_enc};
use super::signin::{Viewer, fresh_code};
use crate::policy::edit::{AccessChange, change_access};
use crate::policy::{PolicyErrors, PolicySet, model::file_name};

/// One save at a time in this process: the base check, the write and the
/// reload happen together.
static SAVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The SHA-256 (hex) of a file's bytes: the version an edit starts from.
fn version(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The system's policy file and its text now.
async fn current(console: &super::Console, system: &str) -> Result<(PathBuf, String), Refused> {
    let set = console.services.policies();
    let s = set.system(system).ok_or(Refused::NotFound)?;
    let path = s.file.clone();
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| Refused::Internal(format!("reading {}: {e}", path.display())))?;
    Ok((path, text))
}

/// A browser sends a textarea's lines with CRLF; keep the file's own
/// line ends.
fn as_in_file(submitted: &str, file: &str) -> String {
    let lf = submitted.replace("\r\n", "\n");
    if file.contains("\r\n") {
        lf.replace('\n', "\r\n")
    } else {
        lf
    }
}

/// The set the directory would hold with `text` as `path`, checked as a
/// reload checks it (networks and credential names included).
async fn check(
    console: &super::Console,
    path: &Path,
    text: &str,
) -> Result<Result<PolicySet, PolicyErrors>, Refused> {
    let credentials = crate::session::credential_names(&console.services.store).await?;
    let dir = console.services.config.paths.policies.clone();
    let networks = console.services.config.networks.clone();
    let path = path.to_path_buf();
    let text = text.to_string();
    tokio::task::spawn_blocking(move || {
        PolicySet::load_dir_replacing(&dir, &networks, Some(&credentials), &path, &text)
    })
    .await
    .map_err(|e| Refused::Internal(format!("checking the policy: {e}")))
}

/// GET /policy/systems/{system}/edit: the file's text and the common-change form.
pub async fn form(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(system): UrlPath<String>,
) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let (path, text) = current(&console, &system).await?;
    let body = edit_body(&viewer, &system, &path, &version(&text), &text, "");
    Ok(page(&viewer, &system, &body))
}

fn page(viewer: &Viewer, system: &str, body: &str) -> Html<String> {
    let lang = viewer.lang;
    let title = lang.t("policy.edit_title").replace("{system}", system);
    let body = format!(
        r#"<h1>{}</h1><p class="policy-nav"><a href="/policy/systems/{}">{}</a></p>{body}"#,
        esc(&title),
        url_enc(system),
        esc(lang.t("policy.back_to_system")),
    );
    layout(lang, viewer, &title, &body)
}

/// The common-change form and the text editor, starting from version
/// `base` of the file, with `text` in the editor.
fn edit_body(
    viewer: &Viewer,
    system: &str,
    path: &Path,
    base: &str,
    text: &str,
    before: &str,
) -> String {
    let lang = viewer.lang;
    let set = crate::policy::PolicySet::parse_files(
        &[(path.to_path_buf(), text.to_string())],
        None,
        None,
    )
    .ok();
    let entries: String = set
        .iter()
        .flat_map(|s| s.access())
        .map(|a| {
            format!(
                r#"<option value="{i}">access[{i}] {vendor}: {users}</option>"#,
                i = a.index,
                vendor = esc(&a.vendor),
                users = esc(&a.users.join(", ")),
            )
        })
        .collect();
    let change = if entries.is_empty() {
        String::new()
    } else {
        format!(
            r#"<section class="policy-change"><h2>{title}</h2><form method="post" action="/policy/systems/{href}/change" class="filters"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="base" value="{base}"><input type="hidden" name="text" value="{text}"><label>{entry_l}<select name="index" id="change-entry">{entries}</select></label><label>{kind_l}<select name="change" id="change-kind"><option value="engineer">{engineer}</option><option value="until">{until}</option><option value="hours">{hours}</option></select></label><label>{value_l}<input name="value" id="change-value" required></label><button type="submit" id="change-submit">{prepare}</button></form><p class="hint">{hint}</p></section>"#,
            title = esc(lang.t("policy.common_changes")),
            href = url_enc(system),
            csrf = esc(&viewer.csrf),
            base = esc(base),
            text = esc(text),
            entry_l = esc(lang.t("policy.entry")),
            kind_l = esc(lang.t("policy.change")),
            engineer = esc(lang.t("policy.change_engineer")),
            until = esc(lang.t("policy.change_until")),
            hours = esc(lang.t("policy.change_hours")),
            value_l = esc(lang.t("policy.value")),
            prepare = esc(lang.t("policy.prepare")),
            hint = esc(lang.t("policy.change_hint")),
        )
    };
    // A newline right after <textarea> is dropped by the parser: add one so
    // a text that starts with an empty line keeps it.
    format!(
        r#"{before}{change}<section class="policy-text"><h2>{title}</h2><p class="hint">{hint}</p><form method="post" action="/policy/systems/{href}/edit"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="base" value="{base}"><input type="hidden" name="action" value="check"><textarea name="text" id="policy-text" rows="30" cols="100" spellcheck="false">
{text}</textarea><p><button type="submit" id="policy-check">{check}</button></p></form></section>"#,
        title = esc(&lang
            .t("policy.file_text")
            .replace("{file}", &file_name(path))),
        hint = esc(lang.t("policy.text_hint")),
        href = url_enc(system),
        csrf = esc(&viewer.csrf),
        base = esc(base),
        text = esc(text),
        check = esc(lang.t("policy.check")),
    )
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    base: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    code: String,
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    base: String,
    /// The text being edited (the file's, or one already changed on the
    /// review page): the change applies to it, so changes add up.
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    index: usize,
    #[serde(default)]
    change: String,
    #[serde(default)]
    value: String,
}

/// The refusal of a save or review whose base is not the file any more:
/// someone saved in between. The text stays on the page to copy from.
fn conflict(viewer: &Viewer, system: &str, text: &str) -> Response {
    let lang = viewer.lang;
    let body = format!(
        r#"<p class="error" id="policy-conflict">{msg}</p><p><a class="button" href="/policy/systems/{href}/edit" id="policy-reopen">{reopen}</a></p><h2>{yours}</h2><textarea readonly rows="20" cols="100" id="policy-yours">
{text}</textarea>"#,
        msg = esc(lang.t("policy.conflict")),
        href = url_enc(system),
        reopen = esc(lang.t("policy.reopen")),
        yours = esc(lang.t("policy.your_text")),
        text = esc(text),
    );
    (StatusCode::CONFLICT, page(viewer, system, &body)).into_response()
}

/// The review of a proposed text: its errors (with line and field) or that
/// it is valid, the diff against the file, and, when valid and changed, the
/// save form carrying exactly this text.
async fn review(
    console: &super::Console,
    viewer: &Viewer,
    system: &str,
    path: &Path,
    old: &str,
    base: &str,
    new: &str,
) -> Result<Response, Refused> {
    let lang = viewer.lang;
    let checked = check(console, path, new).await?;
    let diff = diff_html(lang, old, new);
    let changed = old != new;
    let (status, verdict, save) = match &checked {
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                r#"<p class="error" id="policy-invalid">{}</p>{}"#,
                esc(&lang
                    .t("policy.invalid")
                    .replace("{n}", &errors.0.len().to_string())),
                errors_html(lang, path, new, errors)
            ),
            String::new(),
        ),
        Ok(_) if !changed => (
            StatusCode::OK,
            format!(
                r#"<p class="hint" id="policy-unchanged">{}</p>"#,
                esc(lang.t("policy.unchanged"))
            ),
            String::new(),
        ),
        Ok(set) => (
            StatusCode::OK,
            format!(
                r#"<p class="ok" id="policy-valid">{}</p>"#,
                esc(&lang
                    .t("policy.valid")
                    .replace("{systems}", &set.systems().count().to_string())
                    .replace("{targets}", &set.targets().count().to_string())
                    .replace("{access}", &set.access().count().to_string()))
            ),
            format!(
                r#"<section class="kill"><h2>{title}</h2><form method="post" action="/policy/systems/{href}/edit"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="base" value="{base}"><input type="hidden" name="action" value="save"><input type="hidden" name="text" value="{text}"><label>{code_l}<input name="code" id="policy-code" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required></label><button type="submit" class="danger" id="policy-save">{save}</button></form><p class="hint">{hint}</p></section>"#,
                title = esc(lang.t("policy.save_title")),
                href = url_enc(system),
                csrf = esc(&viewer.csrf),
                base = esc(base),
                text = esc(new),
                code_l = esc(lang.t("kill.code")),
                save = esc(lang.t("policy.save")),
                hint = esc(lang.t("policy.save_hint")),
            ),
        ),
    };
    let before = format!(
        r#"<section class="review">{verdict}<h2>{diff_title}</h2>{diff}{save}</section>"#,
        diff_title = esc(lang.t("policy.diff")),
    );
    let body = edit_body(viewer, system, path, base, new, &before);
    Ok((status, page(viewer, system, &body)).into_response())
}

fn errors_html(lang: Lang, path: &Path, text: &str, errors: &PolicyErrors) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = format!(
        r#"<table id="policy-errors"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>"#,
        esc(lang.t("policy.file")),
        esc(lang.t("policy.line")),
        esc(lang.t("policy.field")),
        esc(lang.t("policy.message")),
    );
    for e in &errors.0 {
        // The line as written, for errors in the file being edited.
        let shown = match e.line {
            Some(n) if e.file == path => lines
                .get(n.saturating_sub(1))
                .map(|l| format!(r#"<br><code class="error-line">{}</code>"#, esc(l)))
                .unwrap_or_default(),
            _ => String::new(),
        };
        out.push_str(&format!(
            r#"<tr data-line="{line}" data-field="{field}"><td><code>{file}</code></td><td class="line">{line}</td><td><code>{field}</code></td><td>{message}{shown}</td></tr>"#,
            file = esc(&file_name(&e.file)),
            line = e.line.map(|l| l.to_string()).unwrap_or_default(),
            field = esc(&e.field),
            message = esc(&e.message),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

fn diff_html(lang: Lang, old: &str, new: &str) -> String {
    let diff = line_diff(old, new);
    let hunks = hunks(&diff, 3);
    if hunks.is_empty() {
        return format!(
            r#"<p class="hint" id="policy-diff">{}</p>"#,
            esc(lang.t("policy.no_diff"))
        );
    }
    let mut out = String::from(r#"<table class="diff" id="policy-diff"><tbody>"#);
    for h in hunks {
        match h {
            None => out.push_str(r#"<tr class="gap"><td></td><td></td><td>…</td></tr>"#),
            Some(l) => {
                let (class, mark, text) = match l.line {
                    DiffLine::Same(t) => ("same", " ", t),
                    DiffLine::Removed(t) => ("del", "-", t),
                    DiffLine::Added(t) => ("add", "+", t),
                };
                out.push_str(&format!(
                    r#"<tr class="{class}"><td class="n">{}</td><td class="n">{}</td><td><code>{mark} {}</code></td></tr>"#,
                    l.old.map(|n| n.to_string()).unwrap_or_default(),
                    l.new.map(|n| n.to_string()).unwrap_or_default(),
                    esc(text),
                ));
            }
        }
    }
    out.push_str("</tbody></table>");
    out
}

/// POST /policy/systems/{system}/edit: `action=check` reviews the text;
/// `action=save` (with a fresh code) writes it.
pub async fn submit(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(system): UrlPath<String>,
    Form(f): Form<EditForm>,
) -> Result<Response, Refused> {
    viewer.require_admin()?;
    let (path, old) = current(&console, &system).await?;
    let new = as_in_file(&f.text, &old);
    if f.base != version(&old) {
        return Ok(conflict(&viewer, &system, &new));
    }
    match f.action.as_str() {
        "check" => review(&console, &viewer, &system, &path, &old, &f.base, &new).await,
        "save" => save(&console, &viewer, &system, &path, &f.base, &new, &f.code).await,
        other => Err(Refused::BadRequest(format!("unknown action {other:?}"))),
    }
}

/// POST /policy/systems/{system}/change: one common change, made as a TOML
/// edit and shown for review (saved only from there).
pub async fn change(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(system): UrlPath<String>,
    Form(f): Form<ChangeForm>,
) -> Result<Response, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    let (path, old) = current(&console, &system).await?;
    let editing = match &f.text {
        Some(t) => as_in_file(t, &old),
        None => old.clone(),
    };
    if f.base != version(&old) {
        return Ok(conflict(&viewer, &system, &editing));
    }
    let value = f.value.trim();
    let wanted = match f.change.as_str() {
        "engineer" => AccessChange::AddEngineer(value.to_string()),
        "until" => match value.parse() {
            Ok(d) => AccessChange::ContractUntil(d),
            Err(_) => {
                return Err(Refused::BadRequest(
                    lang.t("policy.bad_date").replace("{v}", value),
                ));
            }
        },
        "hours" => AccessChange::Hours(value.to_string()),
        other => return Err(Refused::BadRequest(format!("unknown change {other:?}"))),
    };
    let new = change_access(&editing, f.index, &wanted)
        .map_err(|e| Refused::BadRequest(e.to_string()))?;
    review(&console, &viewer, &system, &path, &old, &f.base, &new).await
}

/// Checks, asks for the code, and writes: never an invalid set, never over
/// someone else's save.
async fn save(
    console: &super::Console,
    viewer: &Viewer,
    system: &str,
    path: &Path,
    base: &str,
    new: &str,
    code: &str,
) -> Result<Response, Refused> {
    // Refuse an invalid text before asking for the code (nothing is spent).
    if check(console, path, new).await?.is_err() {
        let (_, old) = current(console, system).await?;
        return review(console, viewer, system, path, &old, base, new).await;
    }
    fresh_code(console, viewer, code.trim()).await?;
    let _one_at_a_time = SAVING.lock().await;
    // Again under the lock: another save may have come first.
    let old = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| Refused::Internal(format!("reading {}: {e}", path.display())))?;
    if version(&old) != base {
        return Ok(conflict(viewer, system, new));
    }
    if old == new {
        return Ok(Redirect::to(&format!("/policy/systems/{}", url_enc(system))).into_response());
    }
    // Other files may have changed since the review: check the set again.
    if check(console, path, new).await?.is_err() {
        return review(console, viewer, system, path, &old, base, new).await;
    }
    let to_write = path.to_path_buf();
    let text = new.to_string();
    tokio::task::spawn_blocking(move || write_atomically(&to_write, &text))
        .await
        .map_err(|e| Refused::Internal(format!("writing the policy: {e}")))?
        .map_err(|e| Refused::Internal(format!("writing {}: {e}", path.display())))?;
    let diff = unified(&old, new, 3);
    let file = file_name(path);
    let event = crate::auth::admin_event(
        &viewer.user,
        "policy_edit",
        format!(
            "policy file {file} edited in the console by {} ({} → {}):\n{diff}",
            viewer.user,
            &version(&old)[..12],
            &version(new)[..12]
        ),
    )
    .user(viewer.user.as_str())
    .source(viewer.source)
    .with("file", file.as_str())
    .with("before_sha256", version(&old))
    .with("after_sha256", version(new))
    .with("diff", diff.as_str());
    if let Err(e) = console.services.store.audit(&event).await {
        // The file is written: say so in the log rather than hide the save.
        tracing::error!(error = %e, file = %file, "console: auditing a policy edit failed");
    }
    tracing::info!(file = %file, admin = %viewer.user, "console: policy file edited");
    // The watcher reloads on the rename too; reloading here makes the page
    // that follows show the set in force. A reload that is refused (the
    // directory changed again meanwhile) keeps the old set: say so.
    let before = console.services.policies();
    console
        .services
        .reload_policies(&format!("{file} edited in the console by {}", viewer.user))
        .await;
    let in_force = !std::sync::Arc::ptr_eq(&before, &console.services.policies());
    let name = new_system_name(path, new).unwrap_or_else(|| system.to_string());
    Ok(Redirect::to(&format!(
        "/policy/systems/{}?saved={}",
        url_enc(&name),
        if in_force {
            "in_force"
        } else {
            "reload_refused"
        }
    ))
    .into_response())
}

/// The system's name as the saved text gives it (an edit may rename it).
fn new_system_name(path: &Path, text: &str) -> Option<String> {
    PolicySet::parse_files(&[(path.to_path_buf(), text.to_string())], None, None)
        .ok()?
        .systems()
        .next()
        .map(|s| s.name.clone())
}

/// Replaces `path` with `text` so that a reader sees the old file or the
/// new one, never a part: a hidden temporary file in the same directory
/// (hidden and not `*.toml`, so neither the loader nor the watcher takes
/// it for a policy), written and synced, renamed over the file, and the
/// directory synced. The file keeps its permissions.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("the policy file has no directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the policy file has no name"))?
        .to_string_lossy()
        .into_owned();
    let mode = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .unwrap_or(0o640);
    let tmp = dir.join(format!(".{name}.{}.edit", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_follow_the_file() {
        assert_eq!(as_in_file("a\r\nb\r\n", "x\ny\n"), "a\nb\n");
        assert_eq!(as_in_file("a\r\nb\n", "x\r\ny\r\n"), "a\r\nb\r\n");
    }

    #[test]
    fn atomic_write_replaces_and_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lab.toml");
        std::fs::write(&p, "old\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&p, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["lab.toml"]);
        // A file in a directory that is not there: an error, nothing written.
        assert!(write_atomically(&dir.path().join("gone/x.toml"), "x").is_err());
    }
}
