//! The common changes to an access entry, made as edits of the policy
//! file's TOML text: add an engineer, extend (or shorten) the contract,
//! change the hours. Comments, order and layout of everything else stay as
//! the administrator wrote them, so the change reads as a small diff.
//!
//! These only edit text; whether the result is a valid policy is for the
//! loader's checks (`PolicySet::load_dir_replacing`), as for any edit.

use chrono::{Datelike as _, NaiveDate};
use toml_edit::{DocumentMut, Item, Value};

/// A change the form asks for, to the `[[access]]` entry at `index`
/// (0-based, as in `access[0]` of `policy check`'s messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessChange {
    AddEngineer(String),
    ContractUntil(NaiveDate),
    Hours(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the file is not TOML: {0}")]
    NotToml(String),
    #[error("there is no access[{0}] in this file")]
    NoAccessEntry(usize),
    #[error(
        "access[{index}].{field} is not a list or table sekisho can change here; edit the text"
    )]
    Shape { index: usize, field: &'static str },
    #[error("{0:?} is already in access[{1}].users")]
    AlreadyListed(String, usize),
    #[error("the value is empty")]
    Empty,
}

/// `text` with `change` applied to `access[index]`.
pub fn change_access(text: &str, index: usize, change: &AccessChange) -> Result<String, EditError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::NotToml(e.message().to_string()))?;
    let entry = doc
        .get_mut("access")
        .and_then(|a| a.as_array_of_tables_mut())
        .and_then(|a| a.get_mut(index))
        .ok_or(EditError::NoAccessEntry(index))?;
    match change {
        AccessChange::AddEngineer(user) => {
            let user = user.trim();
            if user.is_empty() {
                return Err(EditError::Empty);
            }
            let users =
                entry
                    .get_mut("users")
                    .and_then(Item::as_array_mut)
                    .ok_or(EditError::Shape {
                        index,
                        field: "users",
                    })?;
            if users.iter().any(|u| u.as_str() == Some(user)) {
                return Err(EditError::AlreadyListed(user.to_string(), index));
            }
            users.push(user);
        }
        AccessChange::ContractUntil(date) => {
            let contract = entry.get_mut("contract").ok_or(EditError::Shape {
                index,
                field: "contract",
            })?;
            let shape = EditError::Shape {
                index,
                field: "contract.until",
            };
            let until = contract
                .as_table_like_mut()
                .and_then(|t| t.get_mut("until"))
                .ok_or(shape.clone())?;
            // Written the way it was: a TOML date stays a date, a string a string.
            let new = match until.as_value() {
                Some(Value::Datetime(_)) => Value::from(toml_edit::Datetime {
                    date: Some(toml_edit::Date {
                        year: u16::try_from(date.year()).map_err(|_| shape.clone())?,
                        month: u8::try_from(date.month()).map_err(|_| shape.clone())?,
                        day: u8::try_from(date.day()).map_err(|_| shape.clone())?,
                    }),
                    time: None,
                    offset: None,
                }),
                Some(Value::String(_)) => Value::from(date.format("%Y-%m-%d").to_string()),
                _ => return Err(shape),
            };
            replace_value(until, new);
        }
        AccessChange::Hours(hours) => {
            let hours = hours.trim();
            if hours.is_empty() {
                return Err(EditError::Empty);
            }
            match entry.get_mut("hours") {
                Some(item) if item.is_str() => replace_value(item, Value::from(hours)),
                Some(_) => {
                    return Err(EditError::Shape {
                        index,
                        field: "hours",
                    });
                }
                None => {
                    entry.insert("hours", toml_edit::value(hours));
                }
            }
        }
    }
    Ok(doc.to_string())
}

/// Puts `new` where `item` is, keeping the spacing and comments around it.
fn replace_value(item: &mut Item, mut new: Value) {
    if let Some(old) = item.as_value() {
        *new.decor_mut() = old.decor().clone();
    }
    *item = Item::Value(new);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# 財務会計
[system]
name = "fa"
zone = "lgwan"

[[access]]
vendor = "acme"   # 保守業者
users = ["tanaka", "suzuki"]
contract = { from = "2026-04-01", until = "2027-03-31" }
hours = "weekdays 09:00-18:00"

[[access]]
vendor = "beta"
users = ["sato"]
contract = { from = 2026-04-01, until = 2026-12-31 }
hours = "always"
"#;

    #[test]
    fn adds_an_engineer_and_keeps_the_rest() {
        let out = change_access(TEXT, 0, &AccessChange::AddEngineer("ito".into())).unwrap();
        assert_eq!(
            out,
            TEXT.replace(
                r#"users = ["tanaka", "suzuki"]"#,
                r#"users = ["tanaka", "suzuki", "ito"]"#
            )
        );
        assert_eq!(
            change_access(TEXT, 0, &AccessChange::AddEngineer("tanaka".into())),
            Err(EditError::AlreadyListed("tanaka".into(), 0))
        );
        assert_eq!(
            change_access(TEXT, 2, &AccessChange::AddEngineer("ito".into())),
            Err(EditError::NoAccessEntry(2))
        );
        assert_eq!(
            change_access(TEXT, 0, &AccessChange::AddEngineer(" ".into())),
            Err(EditError::Empty)
        );
    }

    #[test]
    fn moves_the_contract_end_as_written() {
        let day = NaiveDate::from_ymd_opt(2028, 3, 31).unwrap();
        let out = change_access(TEXT, 0, &AccessChange::ContractUntil(day)).unwrap();
        assert_eq!(
            out,
            TEXT.replace(r#"until = "2027-03-31""#, r#"until = "2028-03-31""#)
        );
        let out = change_access(TEXT, 1, &AccessChange::ContractUntil(day)).unwrap();
        assert_eq!(
            out,
            TEXT.replace("until = 2026-12-31", "until = 2028-03-31")
        );
    }

    #[test]
    fn changes_the_hours() {
        let out = change_access(TEXT, 0, &AccessChange::Hours("always".into())).unwrap();
        assert_eq!(
            out,
            TEXT.replace(r#"hours = "weekdays 09:00-18:00""#, r#"hours = "always""#)
        );
    }

    #[test]
    fn refuses_what_is_not_toml() {
        assert!(matches!(
            change_access("[[access]\n", 0, &AccessChange::Hours("always".into())),
            Err(EditError::NotToml(_))
        ));
    }
}
