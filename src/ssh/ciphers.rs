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
//!   matters, and sekisho offers russh's default list unless `[ssh]
//!   ciphers` names others ([`front`]: AEAD and CTR ciphers only, never
//!   CBC or none). Offering AES only
//!   (so that OpenSSH, which asks for chacha20-poly1305 first, would take
//!   aes128-ctr with hmac-sha2-256-etm) was measured in session 5 and saved
//!   nothing: in russh, CTR + HMAC costs what chacha20-poly1305 does, and
//!   OpenSSH takes AES-GCM only when neither chacha20 nor CTR is offered,
//!   which would shut out CTR-only clients (Debian 12's paramiko 2.12).
//!
//! The AEAD ciphers themselves come from AWS-LC through russh's
//! `aws-lc-rs` backend, which takes 0.74x (chacha20-poly1305) and 0.66x
//! (AES-GCM) of ring's time here, so the front leg that the client chooses
//! costs less too (Cargo.toml says more).

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
/// rest of russh's default list for targets without it. AES-128 before
/// AES-256, as in OpenSSH's own default order: 10 rounds instead of 14,
/// measured 0.10 against 0.12 CPU s/GiB here (session 6).
const BACK_WITH_AES: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
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

/// What the front leg may offer: the AEAD ciphers and AES-CTR (with one of
/// russh's HMAC-SHA-2 MACs; SHA-1 ones are not offered). CBC modes
/// (plaintext recovery attacks on SSH's CBC, CVE-2008-5161) and "none" are
/// never offered, whatever the configuration says.
const FRONT_ALLOWED: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// The ciphers the front leg offers for `[ssh] ciphers` (OpenSSH's names,
/// in the order given; `None`: russh's default list), or what is wrong
/// with the list, for the person editing the configuration.
pub fn front(names: Option<&[String]>) -> Result<Vec<cipher::Name>, String> {
    let Some(names) = names else {
        return Ok(Preferred::DEFAULT.cipher.to_vec());
    };
    if names.is_empty() {
        return Err("lists no cipher: a client could not connect at all".into());
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let Some(c) = FRONT_ALLOWED.iter().find(|c| c.as_ref() == name.as_str()) else {
            let allowed: Vec<&str> = FRONT_ALLOWED.iter().map(|c| c.as_ref()).collect();
            return Err(format!(
                "\"{name}\" is not a cipher sekisho offers (one of: {})",
                allowed.join(", ")
            ));
        };
        if !out.contains(c) {
            out.push(*c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_leg_asks_for_aes_gcm_first() {
        assert_eq!(BACK_WITH_AES[0].as_ref(), "aes128-gcm@openssh.com");
        assert!(!BACK_WITH_AES.iter().any(|c| c.as_ref().ends_with("-cbc")));
    }

    #[test]
    fn every_offered_cipher_is_one_russh_implements() {
        for name in BACK_WITH_AES {
            assert!(
                cipher::ALL_CIPHERS.contains(&name),
                "{} is not implemented",
                name.as_ref()
            );
        }
    }

    #[test]
    fn the_front_offers_what_is_configured_and_refuses_weak_or_unknown_ciphers() {
        let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(front(None), Ok(Preferred::DEFAULT.cipher.to_vec()));
        assert_eq!(
            front(Some(&names(&[
                "aes128-gcm@openssh.com",
                "aes256-gcm@openssh.com",
                "aes128-gcm@openssh.com"
            ]))),
            Ok(vec![cipher::AES_128_GCM, cipher::AES_256_GCM])
        );
        for bad in [
            "aes128-cbc",
            "none",
            "3des-cbc",
            "AES128-GCM@openssh.com",
            "",
        ] {
            let err = front(Some(&names(&["aes128-gcm@openssh.com", bad]))).unwrap_err();
            assert!(err.contains(&format!("\"{bad}\" is not a cipher")), "{err}");
            assert!(err.contains("chacha20-poly1305@openssh.com"), "{err}");
        }
        assert!(front(Some(&[])).unwrap_err().contains("no cipher"));
        for name in FRONT_ALLOWED {
            assert!(cipher::ALL_CIPHERS.contains(&name), "{}", name.as_ref());
        }
    }
}
