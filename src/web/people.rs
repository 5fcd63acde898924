//! People, vendors, target secrets and one-time tickets, for admins: what
//! `sekisho user|vendor|secret|ticket …` do, through the same functions
//! (`auth::people`, `auth::create_user_by`, `auth::reset_totp`), so the
//! checks and the `admin_change` audit events are the CLI's.
//!
//! - Every page and action is for admins only (403 otherwise), behind the
//!   console's CSRF check.
//! - What hands out a credential — adding a person, a new code, a ticket,
//!   setting a target secret — also asks for the admin's fresh code.
//! - A new person's TOTP secret (as a QR code drawn as SVG on the server,
//!   and as text) and a generated password are shown once, on the answer to
//!   the POST; they are not stored in a form the console can show again.
//!   Target secrets are never shown at all.

use axum::extract::{Form, Path as UrlPath, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use chrono::Utc;
use serde::Deserialize;

use super::Shared;
use super::i18n::Lang;
use super::page::{Refused, esc, layout, url_enc, when};
use super::signin::{Viewer, fresh_code};
use crate::auth::{AuthError, Role, people};
use crate::store::StoreError;

/// An admin's mistake (unknown person, bad key, name taken) is told to
/// them; a database failure is internal.
fn refused(e: AuthError) -> Refused {
    match e {
        AuthError::Store(StoreError::Database(e)) => Refused::Internal(e.to_string()),
        e => Refused::BadRequest(e.to_string()),
    }
}

fn role_text(lang: Lang, role: Role) -> &'static str {
    match role {
        Role::Engineer => lang.t("role.engineer"),
        Role::Auditor => lang.t("role.auditor"),
        Role::Admin => lang.t("role.admin"),
        Role::Approver => lang.t("role.approver"),
    }
}

fn code_field(lang: Lang, id: &str) -> String {
    format!(
        r#"<label>{code}<input name="code" id="{id}" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required></label>"#,
        code = esc(lang.t("kill.code")),
    )
}

fn hidden_csrf(viewer: &Viewer) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        esc(&viewer.csrf)
    )
}

/// The otpauth URI as a QR code: an SVG drawn here, shown as an image
/// (`data:` is allowed for images by the console's CSP; no script).
fn qr_image(uri: &str) -> Result<String, Refused> {
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| Refused::Internal(format!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    let data = base64::engine::general_purpose::STANDARD.encode(svg.as_bytes());
    Ok(format!(
        r#"<img class="qr" id="totp-qr" width="240" height="240" alt="QR" src="data:image/svg+xml;base64,{data}">"#
    ))
}

/// The secret shown once: QR code, base32 text and the otpauth URI.
fn shown_once(lang: Lang, person: &str, secret: &str, uri: &str) -> Result<String, Refused> {
    Ok(format!(
        r#"<section class="once"><h2>{title}</h2><p class="error">{warn}</p>{qr}<table class="facts"><tr><th>{user}</th><td id="new-user">{person}</td></tr><tr><th>{secret_l}</th><td><code id="totp-secret">{secret}</code></td></tr><tr><th>otpauth URI</th><td><code id="otpauth-uri">{uri}</code></td></tr></table></section>"#,
        title = esc(lang.t("people.totp_title")),
        warn = esc(lang.t("people.shown_once")),
        qr = qr_image(uri)?,
        user = esc(lang.t("people.name")),
        person = esc(person),
        secret_l = esc(lang.t("people.totp_secret")),
        secret = esc(secret),
        uri = esc(uri),
    ))
}

/// GET /people: people, vendors, secrets and the forms to change them.
pub async fn page(State(console): State<Shared>, viewer: Viewer) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    let tz = console.services.config.time_zone;
    let store = &console.services.store;
    let now = Utc::now();
    let csrf = hidden_csrf(&viewer);

    let mut rows = String::new();
    for u in store.users().await? {
        let locked = match u.locked_until {
            Some(t) if t > now => lang.t("people.locked"),
            _ => "",
        };
        let state = if u.enabled {
            lang.t("people.enabled")
        } else {
            lang.t("people.disabled")
        };
        let (action, label) = if u.enabled && locked.is_empty() {
            ("disable", lang.t("people.disable"))
        } else {
            ("enable", lang.t("people.enable"))
        };
        let name = url_enc(&u.name);
        rows.push_str(&format!(
            r#"<tr id="user-{id}"><td><a href="/people/{name}">{user}</a></td><td>{role}</td><td>{vendor}</td><td class="user-state">{state} {locked}</td><td>{keys}</td><td>{last}</td><td><form method="post" action="/people/{name}/{action}" class="inline">{csrf}<button type="submit" id="{action}-{id}">{label}</button></form></td></tr>"#,
            id = esc(&u.name),
            user = esc(&u.name),
            role = esc(role_text(lang, u.role)),
            vendor = esc(u.vendor.as_deref().unwrap_or("-")),
            state = esc(state),
            locked = esc(locked),
            keys = u.keys,
            last = u
                .last_signin_at
                .map(|t| esc(&when(t, tz)))
                .unwrap_or_else(|| esc(lang.t("people.never"))),
            label = esc(label),
        ));
    }
    let users = format!(
        r#"<table id="people"><thead><tr><th>{name}</th><th>{role}</th><th>{vendor}</th><th>{state}</th><th>{keys}</th><th>{last}</th><th></th></tr></thead><tbody>{rows}</tbody></table>"#,
        name = esc(lang.t("people.name")),
        role = esc(lang.t("people.role")),
        vendor = esc(lang.t("people.vendor")),
        state = esc(lang.t("people.state")),
        keys = esc(lang.t("people.keys")),
        last = esc(lang.t("people.last_signin")),
    );

    let vendors = store.vendors().await?;
    let mut vendor_options = format!(
        r#"<option value="">{}</option>"#,
        esc(lang.t("people.none"))
    );
    let mut vendor_rows = String::new();
    for v in &vendors {
        vendor_options.push_str(&format!(
            r#"<option value="{v}">{v}</option>"#,
            v = esc(&v.name)
        ));
        let chain = store.vendor_chain(&v.name).await?;
        vendor_rows.push_str(&format!(
            r#"<tr id="vendor-{v}"><td>{v}</td><td>{chain}</td></tr>"#,
            v = esc(&v.name),
            chain = esc(&chain.join(" → "))
        ));
    }
    let mut roles = String::new();
    for role in [Role::Engineer, Role::Auditor, Role::Admin, Role::Approver] {
        roles.push_str(&format!(
            r#"<option value="{v}">{t}</option>"#,
            v = role.as_str(),
            t = esc(role_text(lang, role))
        ));
    }
    let add_user = format!(
        r#"<section class="kill" id="add-user"><h2>{title}</h2><form method="post" action="/people">{csrf}<label>{name}<input name="name" id="new-name" required maxlength="64"></label><label>{role}<select name="role" id="new-role">{roles}</select></label><label>{vendor}<select name="vendor" id="new-vendor">{vendor_options}</select></label><label>{password}<input type="password" name="password" id="new-password" autocomplete="new-password"></label>{code}<button type="submit" id="add-user-submit">{button}</button></form><p class="hint">{hint}</p></section>"#,
        title = esc(lang.t("people.add")),
        name = esc(lang.t("people.name")),
        role = esc(lang.t("people.role")),
        vendor = esc(lang.t("people.vendor")),
        password = esc(lang.t("people.password_optional")),
        code = code_field(lang, "add-user-code"),
        button = esc(lang.t("people.add_button")),
        hint = esc(lang.t("people.add_hint")),
    );
    let vendors_html = format!(
        r#"<h2>{title}</h2><table id="vendors"><thead><tr><th>{vendor}</th><th>{chain}</th></tr></thead><tbody>{vendor_rows}</tbody></table><form method="post" action="/vendors" class="kill">{csrf}<label>{vendor}<input name="name" id="vendor-name" required maxlength="64"></label><label>{sub}<select name="subcontractor_of" id="vendor-parent">{vendor_options}</select></label><button type="submit" id="add-vendor">{add}</button></form>"#,
        title = esc(lang.t("people.vendors")),
        vendor = esc(lang.t("people.vendor")),
        chain = esc(lang.t("people.chain")),
        sub = esc(lang.t("people.subcontractor_of")),
        add = esc(lang.t("people.add_vendor")),
    );

    let mut secret_rows = String::new();
    for s in store.secret_names().await? {
        secret_rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&when(s.updated_at, tz))
        ));
    }
    let secrets = format!(
        r#"<h2>{title}</h2><p class="hint">{hint}</p><table id="secrets"><thead><tr><th>{name}</th><th>{updated}</th></tr></thead><tbody>{secret_rows}</tbody></table><form method="post" action="/secrets" class="kill">{csrf}<label>{name}<input name="name" id="secret-name" required maxlength="64"></label><label>{value}<textarea name="value" id="secret-value" rows="3" cols="40" required autocomplete="off"></textarea></label>{code}<button type="submit" id="set-secret">{button}</button></form>"#,
        title = esc(lang.t("people.secrets")),
        hint = esc(lang.t("people.secrets_hint")),
        name = esc(lang.t("people.secret_name")),
        updated = esc(lang.t("people.secret_updated")),
        value = esc(lang.t("people.secret_value")),
        code = code_field(lang, "secret-code"),
        button = esc(lang.t("people.set_secret")),
    );

    let policies = console.services.policies();
    let mut targets = String::new();
    for t in policies.targets() {
        targets.push_str(&format!(
            r#"<option value="{v}">{v}</option>"#,
            v = esc(&t.name)
        ));
    }
    let tickets = format!(
        r#"<h2>{title}</h2><form method="post" action="/tickets" class="kill">{csrf}<label>{user}<input name="user" id="ticket-user" required maxlength="64"></label><label>{target}<select name="target" id="ticket-target">{targets}</select></label><label>{protocol}<select name="protocol" id="ticket-protocol"><option value="rdp">RDP</option><option value="ssh">SSH</option></select></label>{code}<button type="submit" id="issue-ticket">{button}</button></form>"#,
        title = esc(lang.t("people.tickets")),
        user = esc(lang.t("people.name")),
        target = esc(lang.t("people.target")),
        protocol = esc(lang.t("people.protocol")),
        code = code_field(lang, "ticket-code"),
        button = esc(lang.t("people.issue_ticket")),
    );

    let body = format!(
        r#"<h1>{title}</h1>{users}{add_user}{vendors_html}{secrets}{tickets}"#,
        title = esc(lang.t("people.title")),
    );
    Ok(layout(lang, &viewer, lang.t("people.title"), &body))
}

#[derive(Deserialize)]
pub struct AddUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    vendor: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

/// POST /people: add a person; the answer shows their secret once.
pub async fn add(
    State(console): State<Shared>,
    viewer: Viewer,
    Form(f): Form<AddUserForm>,
) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    let role: Role = f.role.parse().map_err(Refused::BadRequest)?;
    let name = f.name.trim().to_string();
    let vendor = Some(f.vendor.trim()).filter(|v| !v.is_empty());
    let password = zeroize::Zeroizing::new(f.password);
    let password = Some(password.as_str()).filter(|p| !p.is_empty());
    fresh_code(&console, &viewer, f.code.trim()).await?;
    let nu = crate::auth::create_user_by(
        &console.services.store,
        console.services.secrets.master_key(),
        &name,
        role,
        vendor,
        password,
        &viewer.user,
    )
    .await
    .map_err(refused)?;
    let generated = match &nu.password {
        Some(pw) => format!(
            r#"<p>{label}: <code id="new-password-shown">{pw}</code></p>"#,
            label = esc(lang.t("people.generated_password")),
            pw = esc(pw.as_str())
        ),
        None => String::new(),
    };
    let body = format!(
        r#"<h1>{title}</h1><p id="added">{added}</p>{once}{generated}<p><a href="/people" id="back-to-people">{back}</a></p>"#,
        title = esc(lang.t("people.title")),
        added = esc(&format!("{} {}", lang.t("people.added"), nu.name)),
        once = shown_once(lang, &nu.name, &nu.totp_secret_base32, &nu.otpauth_uri)?,
        back = esc(lang.t("people.back")),
    );
    Ok(layout(lang, &viewer, lang.t("people.title"), &body))
}

/// GET /people/{name}: one person's keys, and their code reset.
pub async fn person(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(name): UrlPath<String>,
) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    let tz = console.services.config.time_zone;
    let store = &console.services.store;
    let u = store.user(&name).await?.ok_or(Refused::NotFound)?;
    let csrf = hidden_csrf(&viewer);
    let path = url_enc(&u.name);
    let mut keys = String::new();
    for k in store.keys(&u.name).await? {
        keys.push_str(&format!(
            r#"<tr><td><code>{fp}</code></td><td>{comment}</td><td>{added}</td><td><form method="post" action="/people/{path}/keys/remove" class="inline">{csrf}<input type="hidden" name="fingerprint" value="{fp}"><button type="submit" class="danger">{remove}</button></form></td></tr>"#,
            fp = esc(&k.fingerprint),
            comment = esc(&k.comment),
            added = esc(&when(k.added_at, tz)),
            remove = esc(lang.t("people.remove_key")),
        ));
    }
    let body = format!(
        r#"<h1>{user}</h1><table class="facts"><tr><th>{role_l}</th><td>{role}</td></tr><tr><th>{vendor_l}</th><td>{vendor}</td></tr><tr><th>{state_l}</th><td>{state}</td></tr></table><h2>{keys_title}</h2><table id="keys"><thead><tr><th>{fp_l}</th><th>{comment_l}</th><th>{added_l}</th><th></th></tr></thead><tbody>{keys}</tbody></table><form method="post" action="/people/{path}/keys" class="kill">{csrf}<label>{key_l}<textarea name="key" id="key-text" rows="2" cols="60" required></textarea></label><button type="submit" id="add-key">{add_key}</button></form><section class="kill"><h2>{reset_title}</h2><p class="hint">{reset_hint}</p><form method="post" action="/people/{path}/totp">{csrf}{code}<button type="submit" class="danger" id="reset-totp">{reset}</button></form></section><p><a href="/people">{back}</a></p>"#,
        user = esc(&u.name),
        role_l = esc(lang.t("people.role")),
        role = esc(role_text(lang, u.role)),
        vendor_l = esc(lang.t("people.vendor")),
        vendor = esc(&u.vendor_chain.join(" → ")),
        state_l = esc(lang.t("people.state")),
        state = esc(if u.enabled {
            lang.t("people.enabled")
        } else {
            lang.t("people.disabled")
        }),
        keys_title = esc(lang.t("people.keys")),
        fp_l = esc(lang.t("people.fingerprint")),
        comment_l = esc(lang.t("people.comment")),
        added_l = esc(lang.t("people.added_at")),
        key_l = esc(lang.t("people.key_text")),
        add_key = esc(lang.t("people.add_key")),
        reset_title = esc(lang.t("people.reset_totp")),
        reset_hint = esc(lang.t("people.reset_hint")),
        code = code_field(lang, "reset-code"),
        reset = esc(lang.t("people.reset_totp")),
        back = esc(lang.t("people.back")),
    );
    Ok(layout(lang, &viewer, &u.name, &body))
}

/// POST /people/{name}/disable
pub async fn disable(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, Refused> {
    viewer.require_admin()?;
    people::disable_user(&console.services.store, &name, &viewer.user)
        .await
        .map_err(refused)?;
    Ok(Redirect::to("/people").into_response())
}

/// POST /people/{name}/enable (clears a lockout too)
pub async fn enable(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, Refused> {
    viewer.require_admin()?;
    people::enable_user(&console.services.store, &name, &viewer.user)
        .await
        .map_err(refused)?;
    Ok(Redirect::to("/people").into_response())
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// POST /people/{name}/totp: a new secret, shown once.
pub async fn reset_totp(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(name): UrlPath<String>,
    Form(f): Form<CodeForm>,
) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    fresh_code(&console, &viewer, f.code.trim()).await?;
    let (secret, uri) = crate::auth::reset_totp(
        &console.services.store,
        console.services.secrets.master_key(),
        &name,
        &viewer.user,
    )
    .await
    .map_err(refused)?;
    let body = format!(
        r#"<h1>{name}</h1>{once}<p><a href="/people/{path}">{back}</a></p>"#,
        name = esc(&name),
        once = shown_once(lang, &name, &secret, &uri)?,
        path = url_enc(&name),
        back = esc(lang.t("people.back")),
    );
    Ok(layout(lang, &viewer, &name, &body))
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    fingerprint: String,
}

/// POST /people/{name}/keys: register an OpenSSH public key.
pub async fn add_key(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(name): UrlPath<String>,
    Form(f): Form<KeyForm>,
) -> Result<Response, Refused> {
    viewer.require_admin()?;
    people::register_key(&console.services.store, &name, f.key.trim(), &viewer.user)
        .await
        .map_err(refused)?;
    Ok(Redirect::to(&format!("/people/{}", url_enc(&name))).into_response())
}

/// POST /people/{name}/keys/remove
pub async fn remove_key(
    State(console): State<Shared>,
    viewer: Viewer,
    UrlPath(name): UrlPath<String>,
    Form(f): Form<KeyForm>,
) -> Result<Response, Refused> {
    viewer.require_admin()?;
    people::remove_key(
        &console.services.store,
        &name,
        f.fingerprint.trim(),
        &viewer.user,
    )
    .await
    .map_err(refused)?;
    Ok(Redirect::to(&format!("/people/{}", url_enc(&name))).into_response())
}

#[derive(Deserialize)]
pub struct VendorForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    subcontractor_of: String,
}

/// POST /vendors
pub async fn add_vendor(
    State(console): State<Shared>,
    viewer: Viewer,
    Form(f): Form<VendorForm>,
) -> Result<Response, Refused> {
    viewer.require_admin()?;
    let parent = Some(f.subcontractor_of.trim()).filter(|p| !p.is_empty());
    people::add_vendor(&console.services.store, f.name.trim(), parent, &viewer.user)
        .await
        .map_err(refused)?;
    Ok(Redirect::to("/people").into_response())
}

#[derive(Deserialize)]
pub struct SecretForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    code: String,
}

/// POST /secrets: set or replace a target secret (never shown back).
pub async fn set_secret(
    State(console): State<Shared>,
    viewer: Viewer,
    Form(f): Form<SecretForm>,
) -> Result<Response, Refused> {
    viewer.require_admin()?;
    let value = zeroize::Zeroizing::new(f.value);
    // A pasted private key keeps its lines; a browser sends CRLF.
    let value = zeroize::Zeroizing::new(value.replace("\r\n", "\n"));
    let value = value.strip_suffix('\n').unwrap_or(&value);
    fresh_code(&console, &viewer, f.code.trim()).await?;
    let name = f.name.trim();
    people::set_secret(
        &console.services.store,
        &console.services.secrets,
        name,
        value.as_bytes(),
        &viewer.user,
    )
    .await
    .map_err(refused)?;
    Ok(Redirect::to("/people").into_response())
}

#[derive(Deserialize)]
pub struct TicketForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    code: String,
}

/// POST /tickets: a one-time ticket, shown once.
pub async fn issue_ticket(
    State(console): State<Shared>,
    viewer: Viewer,
    Form(f): Form<TicketForm>,
) -> Result<Html<String>, Refused> {
    viewer.require_admin()?;
    let lang = viewer.lang;
    fresh_code(&console, &viewer, f.code.trim()).await?;
    let services = &console.services;
    let t = people::issue_ticket(
        &services.store,
        services.secrets.master_key(),
        &services.policies(),
        services.config.auth.ticket_lifetime,
        f.user.trim(),
        f.target.trim(),
        f.protocol.trim(),
        &viewer.user,
    )
    .await
    .map_err(refused)?;
    let body = format!(
        r#"<h1>{title}</h1><p class="error">{warn}</p><table class="facts"><tr><th>{ticket_l}</th><td><code id="ticket">{ticket}</code></td></tr><tr><th>{user_l}</th><td>{user}</td></tr><tr><th>{target_l}</th><td>{target} ({protocol})</td></tr><tr><th>{until_l}</th><td>{until}</td></tr></table><p><a href="/people">{back}</a></p>"#,
        title = esc(lang.t("people.tickets")),
        warn = esc(lang.t("people.shown_once")),
        ticket_l = esc(lang.t("people.ticket")),
        ticket = esc(t.text.as_str()),
        user_l = esc(lang.t("people.name")),
        user = esc(&t.user),
        target_l = esc(lang.t("people.target")),
        target = esc(&t.target),
        protocol = esc(&t.protocol.to_uppercase()),
        until_l = esc(lang.t("people.valid_until")),
        until = esc(&when(t.expires_at, services.config.time_zone)),
        back = esc(lang.t("people.back")),
    );
    Ok(layout(lang, &viewer, lang.t("people.tickets"), &body))
}
