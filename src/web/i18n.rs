//! Japanese and English. Japanese is the default; English comes from the
//! person's choice (kept with their sign-in) or else the browser's
//! `Accept-Language`. Every string a page shows is in both catalogs
//! (`i18n/ja.toml`, `i18n/en.toml`), flat `key = "text"` tables; the tests
//! below check that both have the same keys and that every key the console
//! asks for exists.

use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language an `Accept-Language` header prefers among ja and en
    /// (highest q first, earlier first on ties); Japanese when it names
    /// neither.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else {
            return Lang::Ja;
        };
        let mut best: Option<(f32, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").map(str::to_string))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or_default();
            let Some(lang) = Lang::from_code(primary) else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::Ja)
    }

    /// The text of `key` in this language; the key itself if it is missing
    /// (a test keeps that from happening).
    pub fn t(self, key: &'static str) -> &'static str {
        let catalog = match self {
            Lang::Ja => &*JA,
            Lang::En => &*EN,
        };
        catalog.get(key).map(String::as_str).unwrap_or(key)
    }
}

const JA_TOML: &str = include_str!("i18n/ja.toml");
const EN_TOML: &str = include_str!("i18n/en.toml");

static JA: LazyLock<HashMap<String, String>> = LazyLock::new(|| parse_catalog(JA_TOML));
static EN: LazyLock<HashMap<String, String>> = LazyLock::new(|| parse_catalog(EN_TOML));

/// A catalog is a flat table of strings; anything else in it is ignored
/// (and fails the tests).
fn parse_catalog(text: &str) -> HashMap<String, String> {
    match toml::from_str::<toml::Table>(text) {
        Ok(table) => table
            .into_iter()
            .filter_map(|(k, v)| match v {
                toml::Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "a console message catalog is broken");
            HashMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(text: &str) -> BTreeSet<String> {
        let table: toml::Table = toml::from_str(text).expect("catalog parses");
        for (k, v) in &table {
            assert!(v.is_str(), "{k} is not a string");
            assert!(
                !v.as_str().unwrap_or_default().trim().is_empty(),
                "{k} is empty"
            );
        }
        table.keys().cloned().collect()
    }

    #[test]
    fn catalogs_have_the_same_keys() {
        let ja = keys(JA_TOML);
        let en = keys(EN_TOML);
        let only_ja: Vec<_> = ja.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&ja).collect();
        assert!(only_ja.is_empty(), "only in ja.toml: {only_ja:?}");
        assert!(only_en.is_empty(), "only in en.toml: {only_en:?}");
        assert!(ja.len() > 50, "{} keys", ja.len());
    }

    /// Every `t("…")` in the console's sources names a key of the catalogs.
    #[test]
    fn every_key_used_exists() {
        let ja = keys(JA_TOML);
        let sources = [
            include_str!("mod.rs"),
            include_str!("page.rs"),
            include_str!("signin.rs"),
            include_str!("sessions.rs"),
            include_str!("audit.rs"),
            include_str!("api.rs"),
            include_str!("guard.rs"),
            include_str!("replay.rs"),
            include_str!("live.rs"),
            include_str!("policy.rs"),
            include_str!("policy_edit.rs"),
            include_str!("stop.rs"),
            include_str!("people.rs"),
            include_str!("wording.rs"),
        ];
        // Keys are `section.name`; any string literal of that shape whose
        // section is a catalog section counts (labels are passed around
        // before they reach `t`).
        let sections: BTreeSet<&str> = ja.iter().filter_map(|k| k.split('.').next()).collect();
        let mut used = 0;
        for src in sources {
            for literal in src.split('"') {
                let Some((section, name)) = literal.split_once('.') else {
                    continue;
                };
                let shaped = !name.is_empty()
                    && literal
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
                if shaped && sections.contains(section) {
                    assert!(ja.contains(literal), "key {literal:?} is in no catalog");
                    used += 1;
                }
            }
        }
        assert!(used > 50, "{used} keys used");
    }

    #[test]
    fn accept_language() {
        assert_eq!(Lang::from_accept_language(None), Lang::Ja);
        assert_eq!(Lang::from_accept_language(Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("ja,en;q=0.8")), Lang::Ja);
        assert_eq!(Lang::from_accept_language(Some("fr,en;q=0.5")), Lang::En);
        assert_eq!(
            Lang::from_accept_language(Some("en;q=0.3,ja;q=0.7")),
            Lang::Ja
        );
        assert_eq!(Lang::from_accept_language(Some("fr,de")), Lang::Ja);
        assert_eq!(Lang::from_accept_language(Some("en;q=0")), Lang::Ja);
    }

    #[test]
    fn lookups() {
        assert_eq!(Lang::En.t("nav.sessions"), "Sessions");
        assert_eq!(Lang::Ja.t("nav.sessions"), "セッション");
    }
}
