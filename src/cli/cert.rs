//! The RDP front's certificate: `init` makes one, `sekisho cert renew`
//! replaces it, `sekisho cert show` prints what users should check.
//!
//! The generated certificate is self-signed, RSA 3072 by default (every RDP
//! client accepts it, old Windows ones and rdesktop included; `[rdp] cert_key
//! = "ecdsa-p256"` for ECDSA), names `[rdp] host_name` as subject CN and DNS
//! name, and is valid for [`VALIDITY_DAYS`]: users compare its SHA-256 pin
//! once a year. A municipality with its own CA points `[rdp] cert` and
//! `[rdp] key` at the certificate it issued; `renew` then refuses to touch it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Datelike as _;

use super::Global;
use crate::config::{CertKeyType, Config};

/// How long a generated certificate is valid (a year and a day of slack for
/// clocks).
pub const VALIDITY_DAYS: i64 = 366;

#[derive(Debug, clap::Subcommand)]
pub enum CertCmd {
    /// Replace the generated RDP certificate with a new one (new key, a
    /// year's validity); restart `serve` afterwards.
    Renew,
    /// Print the RDP certificate's subject, validity and pin.
    Show,
}

/// A generated certificate and key, PEM, with the pin users compare.
pub struct Generated {
    pub cert_pem: String,
    pub key_pem: zeroize::Zeroizing<String>,
    /// SHA-256 of the certificate's DER, colon-separated hex.
    pub pin: String,
}

/// A new self-signed certificate for `[rdp] host_name` (CN and DNS name;
/// `localhost` and the listeners' addresses too), valid from yesterday for
/// [`VALIDITY_DAYS`], with the key `[rdp] cert_key` names.
pub fn generate(config: &Config) -> anyhow::Result<Generated> {
    let host_name = config.rdp.host_name.as_str();
    let key_type = config.rdp.cert_key;
    let key = match key_type {
        CertKeyType::Rsa3072 => {
            // ring signs with RSA keys but cannot make them: the `rsa` crate
            // generates, rcgen signs through ring from the PKCS#8 form.
            use rsa::pkcs8::EncodePrivateKey as _;
            let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 3072)
                .context("generating an RSA 3072 key")?;
            let der = private
                .to_pkcs8_der()
                .context("encoding the RSA key as PKCS#8")?;
            let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
                .context("loading the RSA key")?
        }
        CertKeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating an ECDSA P-256 key")?,
    };
    // Also the addresses the listeners are bound to (the console on
    // loopback is reached by its address) and localhost.
    let mut names = vec![host_name.to_owned(), "localhost".to_owned()];
    for ip in [config.rdp.listen.ip(), config.web.listen.ip()] {
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).context("the certificate's host name")?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, host_name);
    dn.push(rcgen::DnType::OrganizationName, "sekisho");
    params.distinguished_name = dn;
    let day = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let today = chrono::Utc::now().date_naive();
    params.not_before = day(today - chrono::Duration::days(1));
    params.not_after = day(today + chrono::Duration::days(VALIDITY_DAYS - 1));
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&{
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
        serial[0] &= 0x7f; // a positive integer
        serial
    }));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    let pin = crate::policy::Pin::CertSha256(crate::rdp::back::cert_sha256(cert.der().as_ref()))
        .to_string();
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
        pin,
    })
}

/// The pin of the first certificate in a PEM file.
pub fn pin_of(cert: &Path) -> anyhow::Result<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let first = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .next()
        .with_context(|| format!("{}: no certificate", cert.display()))?
        .with_context(|| format!("reading {}", cert.display()))?;
    Ok(crate::policy::Pin::CertSha256(crate::rdp::back::cert_sha256(first.as_ref())).to_string())
}

pub async fn run(g: &Global, cmd: CertCmd) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&g.config).with_context(|| format!("reading {}", g.config.display()))?;
    match cmd {
        CertCmd::Show => {
            println!("certificate: {}", cfg.rdp.cert.display());
            println!("pin (SHA-256): {}", pin_of(&cfg.rdp.cert)?);
        }
        CertCmd::Renew => {
            if cfg.rdp.cert != cfg.paths.tls_cert() {
                anyhow::bail!(
                    "[rdp] cert names {}, a certificate sekisho did not make: renew it with the CA that issued it",
                    cfg.rdp.cert.display()
                );
            }
            let made = generate(&cfg)?;
            // Both files are written in full next to the old ones before
            // either is renamed over them: a failure leaves the old pair.
            let key_tmp = write_beside(&cfg.rdp.key, made.key_pem.as_bytes())?;
            let cert_tmp = match write_beside(&cfg.rdp.cert, made.cert_pem.as_bytes()) {
                Ok(t) => t,
                Err(e) => {
                    let _ = std::fs::remove_file(&key_tmp);
                    return Err(e);
                }
            };
            std::fs::rename(&key_tmp, &cfg.rdp.key)
                .with_context(|| format!("replacing {}", cfg.rdp.key.display()))?;
            std::fs::rename(&cert_tmp, &cfg.rdp.cert)
                .with_context(|| format!("replacing {}", cfg.rdp.cert.display()))?;
            println!(
                "renewed RDP certificate: {} ({}, CN={}, valid {} days)",
                cfg.rdp.cert.display(),
                cfg.rdp.cert_key.as_str(),
                cfg.rdp.host_name,
                VALIDITY_DAYS
            );
            println!("pin (SHA-256) to tell users: {}", made.pin);
            println!("restart `sekisho serve` to use it");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `contents` to a new file beside `path` (mode 0600); returns its path.
fn write_beside(path: &Path, contents: &[u8]) -> anyhow::Result<std::path::PathBuf> {
    let tmp = path.with_extension("pem.new");
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    Ok(tmp)
}
