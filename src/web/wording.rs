//! The policy decision and the end reason of a session in the reader's
//! language. Gateways store them as kinds with parameters (the `allow`
//! event's `ends_at` / `ends_because` / `request`, the session row's
//! `end_kind`) next to an English sentence; the sentence is what rows from
//! before the kinds were stored show.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::i18n::Lang;
use super::page::{esc, when};
use crate::store::{AuditRecord, EndKind, SessionRecord};

/// The catalog key of why a grant ends (`policy::EndReason::as_str`).
fn because_key(name: &str) -> Option<&'static str> {
    Some(match name {
        "max_session" => "ends.max_session",
        "hours_end" => "ends.hours_end",
        "contract_end" => "ends.contract_end",
        "request_window_end" => "ends.request_window_end",
        _ => return None,
    })
}

/// The decision that allowed a session, from its `allow` event: in `lang`
/// when the event carries its kinds, else the event's own sentence.
pub(crate) fn decision(lang: Lang, tz: Tz, allow: &AuditRecord) -> String {
    worded_decision(lang, tz, allow).unwrap_or_else(|| allow.event.detail.clone())
}

fn worded_decision(lang: Lang, tz: Tz, allow: &AuditRecord) -> Option<String> {
    let data = &allow.event.data;
    let until: DateTime<Utc> = DateTime::parse_from_rfc3339(data.get("ends_at")?.as_str()?)
        .ok()?
        .with_timezone(&Utc);
    let because = because_key(data.get("ends_because")?.as_str()?)?;
    let mut text = lang
        .t("decision.allow")
        .replace("{user}", allow.event.user.as_deref()?)
        .replace(
            "{protocol}",
            &allow.event.protocol.as_deref()?.to_ascii_uppercase(),
        )
        .replace("{target}", allow.event.target.as_deref()?)
        .replace("{until}", &when(until, tz))
        .replace("{because}", lang.t(because));
    if let Some(number) = data.get("request").and_then(|v| v.as_str()) {
        let revision = data
            .get("revision")
            .map(|v| v.to_string())
            .unwrap_or_default();
        text.push_str(&format!(
            " — {}",
            lang.t("decision.request")
                .replace("{number}", number)
                .replace("{revision}", &revision)
        ));
        if data.get("emergency").and_then(|v| v.as_bool()) == Some(true) {
            text.push_str(&format!(" ({})", lang.t("decision.emergency")));
        }
    }
    Some(text)
}

fn end_key(kind: EndKind) -> &'static str {
    match kind {
        EndKind::Closed => "end.closed",
        EndKind::Killed => "end.killed",
        EndKind::TimeLimit => "end.time_limit",
        EndKind::IdleTimeout => "end.idle_timeout",
        EndKind::TargetLost => "end.target_lost",
        EndKind::TargetFailed => "end.target_failed",
        EndKind::RecordingFailed => "end.recording_failed",
        EndKind::Shutdown => "end.shutdown",
        EndKind::ParentEnded => "end.parent_ended",
        EndKind::Abnormal => "end.abnormal",
    }
}

/// Why a session ended, as HTML: the kind in `lang`, with the gateway's
/// technical wording as a detail where it says more than the kind (a
/// network error, a refused credential); the stored sentence alone for
/// rows without a kind. Empty while the session is live.
pub(crate) fn end_reason_html(lang: Lang, tz: Tz, s: &SessionRecord) -> String {
    let sentence = s.end_reason.as_deref().unwrap_or_default();
    let Some(kind) = s.end_kind else {
        return esc(sentence);
    };
    let text = lang.t(end_key(kind)).replace(
        "{until}",
        &s.ends_at
            .or(s.ended_at)
            .map(|t| when(t, tz))
            .unwrap_or_default(),
    );
    let detail = matches!(
        kind,
        EndKind::TargetLost | EndKind::TargetFailed | EndKind::RecordingFailed
    ) && !sentence.is_empty();
    let mut html = format!(
        r#"<span id="end-reason" data-end-kind="{}">{}</span>"#,
        kind.as_str(),
        esc(&text)
    );
    if detail {
        html.push_str(&format!(
            r#" <span class="detail" lang="en">({}: {})</span>"#,
            esc(lang.t("end.detail")),
            esc(sentence)
        ));
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditEvent, AuditKind, SessionStatus};

    fn allow(data: serde_json::Value) -> AuditRecord {
        let mut event = AuditEvent::new(
            AuditKind::Allow,
            "suzuki may use ssh on db01 until 2026-12-05 20:00 JST (longest session allowed)",
        )
        .user("suzuki")
        .target("db01")
        .protocol("ssh");
        event.data = data;
        AuditRecord {
            id: 1,
            at: Utc::now(),
            event,
        }
    }

    #[test]
    fn the_decision_in_each_language_from_its_kinds() {
        let tz: Tz = "Asia/Tokyo".parse().unwrap();
        let a = allow(serde_json::json!({
            "access": "lab.toml#1",
            "ends_at": "2026-12-05T11:00:00+00:00",
            "ends_because": "max_session",
            "request": "WR-2026-0042",
            "revision": 2,
            "emergency": true,
        }));
        assert_eq!(
            decision(Lang::Ja, tz, &a),
            "suzuki は 2026-12-05 20:00:00 JST まで db01 に SSH で接続できます(1 回の接続の上限時間) — 作業申請 WR-2026-0042 第 2 版による (緊急)"
        );
        assert_eq!(
            decision(Lang::En, tz, &a),
            "suzuki may use SSH on db01 until 2026-12-05 20:00:00 JST (longest session allowed) — under work request WR-2026-0042 rev 2 (EMERGENCY)"
        );
    }

    #[test]
    fn old_events_show_their_sentence() {
        let tz: Tz = "Asia/Tokyo".parse().unwrap();
        let a = allow(
            serde_json::json!({ "access": "lab.toml#1", "ends_at": "2026-12-05T11:00:00+00:00" }),
        );
        assert!(decision(Lang::Ja, tz, &a).starts_with("suzuki may use ssh on db01"));
    }

    fn session(kind: Option<EndKind>, reason: &str) -> SessionRecord {
        SessionRecord {
            id: uuid::Uuid::nil(),
            user: "suzuki".into(),
            vendor: None,
            target: "db01".into(),
            protocol: "ssh".into(),
            client: "127.0.0.1".parse().unwrap(),
            parent: None,
            node: "n".into(),
            started_at: Utc::now(),
            ends_at: DateTime::parse_from_rfc3339("2026-12-05T11:00:00+00:00")
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            ended_at: None,
            status: SessionStatus::Ended,
            end_reason: Some(reason.into()),
            end_kind: kind,
            recording_path: None,
            recording_size: None,
            recording_digest: None,
            recording_status: None,
            kill_requested_at: None,
            kill_reason: None,
            killed_by: None,
            work_request: None,
        }
    }

    #[test]
    fn end_reasons_in_each_language_from_their_kind() {
        let tz: Tz = "Asia/Tokyo".parse().unwrap();
        let s = session(Some(EndKind::TimeLimit), "the granted time ended at 20:00");
        let ja = end_reason_html(Lang::Ja, tz, &s);
        assert!(
            ja.contains("許可された時間が終わりました(2026-12-05 20:00:00 JST)"),
            "{ja}"
        );
        assert!(!ja.contains("granted"), "{ja}");
        let s = session(Some(EndKind::TargetLost), "connection reset by peer");
        let ja = end_reason_html(Lang::Ja, tz, &s);
        assert!(ja.contains("接続先との接続が途切れました"), "{ja}");
        assert!(ja.contains("connection reset by peer"), "{ja}");
        let en = end_reason_html(Lang::En, tz, &session(Some(EndKind::Closed), "x"));
        assert!(en.contains("The connection was closed"), "{en}");
        // Rows from before the kinds: their sentence.
        let old = end_reason_html(
            Lang::Ja,
            tz,
            &session(None, "connection closed <by client>"),
        );
        assert_eq!(old, "connection closed &lt;by client&gt;");
        for k in EndKind::ALL {
            assert_ne!(Lang::Ja.t(end_key(k)), end_key(k), "{k} has no wording");
        }
    }
}
