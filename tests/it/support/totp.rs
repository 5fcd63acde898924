//! The one way the tests make sign-in codes: the TOTP key `sekisho user add`
//! printed, and the code of a 30-s step.

/// The key of the `TOTP secret: BASE32` line `sekisho user add` prints.
pub fn key_from_user_add(out: &str) -> Vec<u8> {
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("TOTP secret: "))
        .unwrap_or_else(|| panic!("no TOTP secret printed: {out}"))
        .trim();
    sekisho::auth::totp::decode_secret(secret).unwrap_or_else(|| panic!("bad TOTP secret {secret}"))
}

/// The current 30-s step.
pub fn step_now() -> i64 {
    chrono::Utc::now().timestamp() / 30
}

/// The code of `key` for `step`.
pub fn code_at(key: &[u8], step: i64) -> String {
    sekisho::auth::totp::code_for_step(key, step, 6).expect("a code")
}

/// The code of `key` `steps` steps from now. sekisho accepts one step
/// either side, and each step once per person: the next step's code signs
/// the same person in a second time at once.
pub fn code_ahead(key: &[u8], steps: i64) -> String {
    code_at(key, step_now() + steps)
}
