//! Which ciphers sekisho offers on each leg.
//!
//! sekisho decrypts and re-encrypts every byte it relays, so the cipher of
//! both legs is most of what a bulk transfer costs the bastion. In SSH the
//! *client's* order decides (RFC 4253 7.1: the first algorithm on the
//! client's list that the server also offers), so:
//!
//! - **back leg** (sekisho is the client): sekisho's own order is used.
//!   AES-GCM first where the CPU has AES and carry-less multiply
//!   instructions, then the rest for targets without it.
//! - **front leg** (the person's client chooses): only *what sekisho offers*
//!   matters. OpenSSH's client asks for chacha20-poly1305, aes128/192/256-ctr,
//!   then AES-GCM; offered chacha20-poly1305 it always takes it, and that
//!   costs sekisho several times what AES does here. With AES instructions
//!   sekisho therefore offers AES-GCM and AES-CTR only: OpenSSH takes
//!   aes128-ctr with hmac-sha2-256-etm, PuTTY, WinSCP and Tera Term take
//!   AES-GCM, and every SSH client implements AES-CTR (RFC 4344), so no
//!   client is shut out (Debian 12's paramiko 2.12 knows only CTR and CBC).
//!   CBC modes are never offered. Without AES instructions chacha20-poly1305
//!   is the cheaper one and russh's default order (chacha20 first) is kept.

use std::borrow::Cow;

use russh::{Preferred, cipher};

/// Does this CPU have AES and carry-less multiply instructions (which
/// AES-GCM needs to be cheap)?
fn cpu_has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    let aes = std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    let aes = std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let aes = false;
    aes
}

/// The back leg's order with AES instructions: AES-GCM first, then the
/// rest of russh's default list for targets without it.
const BACK_WITH_AES: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// The front leg's offer with AES instructions: no chacha20-poly1305, so
/// that a client preferring it (OpenSSH) picks AES.
const FRONT_WITH_AES: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// The ciphers sekisho asks the target for, most wanted first.
pub(crate) fn back() -> Cow<'static, [cipher::Name]> {
    if cpu_has_aes() {
        Cow::Borrowed(BACK_WITH_AES)
    } else {
        Preferred::DEFAULT.cipher
    }
}

/// The ciphers sekisho offers the person's client.
pub(crate) fn front() -> Cow<'static, [cipher::Name]> {
    if cpu_has_aes() {
        Cow::Borrowed(FRONT_WITH_AES)
    } else {
        Preferred::DEFAULT.cipher
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What OpenSSH 9's client asks for, in its order (`ssh -Q cipher` minus
    /// what is not in its default `Ciphers`).
    const OPENSSH_CLIENT: &[&str] = &[
        "chacha20-poly1305@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
    ];

    fn openssh_picks(offer: &[cipher::Name]) -> Option<&'static str> {
        OPENSSH_CLIENT
            .iter()
            .copied()
            .find(|c| offer.iter().any(|o| o.as_ref() == *c))
    }

    #[test]
    fn with_aes_instructions_an_openssh_client_gets_aes_and_paramiko_still_connects() {
        assert_eq!(openssh_picks(FRONT_WITH_AES), Some("aes128-ctr"));
        // Debian 12's paramiko 2.12 offers only CTR and CBC modes.
        assert!(FRONT_WITH_AES.iter().any(|c| c.as_ref() == "aes128-ctr"));
        assert!(!FRONT_WITH_AES.iter().any(|c| c.as_ref().ends_with("-cbc")));
        // The back leg is sekisho's own choice: AES-GCM first.
        assert_eq!(BACK_WITH_AES[0].as_ref(), "aes256-gcm@openssh.com");
    }

    #[test]
    fn every_offered_cipher_is_one_russh_implements() {
        for name in FRONT_WITH_AES.iter().chain(BACK_WITH_AES) {
            assert!(
                cipher::ALL_CIPHERS.contains(&name),
                "{} is not implemented",
                name.as_ref()
            );
        }
    }
}
