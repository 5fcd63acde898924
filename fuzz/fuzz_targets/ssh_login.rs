//! SSH and RDP login-name splits (`person@target`, `target\person`) and the
//! exec-command rules (file transfer refused). The first byte chooses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho::fuzzing::{env_allowed, file_transfer_in_exec, split_target, split_user};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Some((person, target)) = split_user(text) {
                assert!(!person.is_empty() && !person.contains('@'));
                assert!(!person.chars().any(char::is_control));
                match &target {
                    Some(t) => assert_eq!(format!("{person}@{t}"), text),
                    None => assert!(text == person || text == format!("{person}@")),
                }
            }
        }
        1 => {
            // The domain field, when present, follows the first NUL.
            let (user, domain) = match text.split_once('\0') {
                Some((u, d)) => (u, Some(d)),
                None => (text, None),
            };
            if let Some((person, target)) = split_target(user, domain) {
                assert!(!person.is_empty() && !target.is_empty());
                assert!(!person.contains('@'));
                if domain.is_none_or(|d| d.trim().is_empty()) {
                    assert!(!person.contains('\\'));
                }
            }
        }
        _ => {
            let verdict = file_transfer_in_exec(text);
            // Another command in front of a refused one changes nothing.
            if verdict.is_some() {
                assert!(
                    file_transfer_in_exec(&format!("true; {text}")).is_some(),
                    "refusal lost behind another command"
                );
            }
            let _ = env_allowed(text);
        }
    }
});
