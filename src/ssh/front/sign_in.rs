//! Sign-in on the front: a registered key or a password, then a one-time
//! code asked by keyboard-interactive (partial success tells OpenSSH to
//! continue); a one-time ticket in place of the password is complete on its
//! own. The SSH user name is `person@target`, split at the first `@`.
//!
//! The phases of one connection's sign-in are [`AuthStage`]; the outcome of
//! a first factor is the control's typed [`FirstFactor`], never a string.

use std::sync::atomic::Ordering;

use russh::keys::PublicKey;
use russh::server::{Auth, PublicKeyOffer, Response, VerifiedPublicKey};
use russh::{MethodKind, MethodSet};

use super::{Connection, FrontError};
use crate::ssh::back;
use crate::ssh::control::{FirstFactor, OfferedKey, SignIn, SshControl};

const CODE_PROMPT: &str = "One-time code: ";
const PASSWORD_PROMPT: &str = "Password: ";

/// Splits the SSH user name `person@target` at the first `@`.
/// Returns None for a name sekisho cannot use (empty person, control chars).
pub fn split_user(user: &str) -> Option<(String, Option<String>)> {
    if user.chars().any(char::is_control) {
        return None;
    }
    let (person, target) = match user.split_once('@') {
        Some((p, t)) => (p, Some(t)),
        None => (user, None),
    };
    if person.is_empty() {
        return None;
    }
    let target = target.filter(|t| !t.is_empty()).map(str::to_string);
    Some((person.to_string(), target))
}

/// Where sign-in stands on this connection.
#[derive(Debug, Clone)]
pub(super) enum AuthStage {
    Start,
    /// First factor accepted; the code is still needed.
    NeedCode(SignIn),
    /// Keyboard-interactive asked for the password.
    AskedPassword(SignIn),
    /// Keyboard-interactive asked for the code.
    AskedCode(SignIn),
}

/// The person, once signed in.
#[derive(Debug, Clone)]
pub(super) struct SignedIn {
    pub(super) person: String,
    pub(super) target: Option<String>,
    pub(super) by_ticket: bool,
}

fn only_keyboard_interactive() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::KeyboardInteractive][..])),
        partial_success: true,
    }
}

/// One keyboard-interactive prompt. The request's name and instruction
/// stay empty: OpenSSH prints a non-empty name as a line of its own at
/// every sign-in, and Dropbear prints it glued to the prompt.
fn prompt(text: &'static str) -> Auth {
    Auth::Partial {
        name: "".into(),
        instructions: "".into(),
        prompts: vec![(text.into(), false)].into(),
    }
}

fn offered_key(key: &PublicKey) -> OfferedKey {
    let mut k = key.clone();
    k.set_comment("");
    OfferedKey {
        fingerprint: back::fingerprint(key),
        openssh: k.to_openssh().unwrap_or_default(),
    }
}

impl<C: SshControl> Connection<C> {
    /// The sign-in attempt a user name stands for. A name sekisho cannot
    /// split (`@x`, control characters) is kept whole as the person: no
    /// account can have such a name (see `auth::check_name`), so the control
    /// refuses and audits it like any unknown user, at the same cost.
    pub(super) fn attempt(&self, user: &str) -> SignIn {
        let (person, target) = split_user(user).unwrap_or_else(|| (user.to_string(), None));
        SignIn {
            person,
            target,
            source: self.source,
        }
    }

    /// Whether this address may have one more secret checked now
    /// (`[limits] signin_attempts_per_minute`). A refusal looks like any
    /// failure to the client, delay included; it is logged and audited by
    /// the gate, at most once a minute.
    async fn may_attempt(&mut self) -> Result<(), Auth> {
        match self.shared.options.admission.attempt(self.source, "ssh") {
            Ok(()) => Ok(()),
            Err(_) => {
                tokio::time::sleep(self.shared.options.failure_delay).await;
                Err(Auth::reject())
            }
        }
    }

    async fn failed(&mut self, user: &str, method: &str) -> Auth {
        let user = crate::auth::login_for_records(user);
        tracing::info!(%user, source = %self.source, method, "SSH sign-in failed");
        tokio::time::sleep(self.shared.options.failure_delay).await;
        Auth::reject()
    }

    fn signed_in_as(&mut self, attempt: &SignIn, ticket_target: Option<String>) -> Auth {
        let by_ticket = ticket_target.is_some();
        let target = ticket_target.or_else(|| attempt.target.clone());
        // No target yet (the menu follows): `-`, not Rust's `None`.
        let shown = target.as_deref().unwrap_or("-");
        tracing::info!(user = %attempt.person, target = shown, source = %self.source, by_ticket, "SSH sign-in succeeded");
        self.auth = AuthStage::Start;
        self.signed_in_flag.store(true, Ordering::Relaxed);
        self.admission.signed_in();
        self.signed_in = Some(SignedIn {
            person: attempt.person.clone(),
            target,
            by_ticket,
        });
        Auth::Accept
    }

    /// Applies a first-factor outcome.
    async fn first_factor(
        &mut self,
        user: &str,
        attempt: SignIn,
        outcome: FirstFactor,
        method: &str,
    ) -> Auth {
        match outcome {
            FirstFactor::Accepted { needs_code: false } => self.signed_in_as(&attempt, None),
            FirstFactor::Accepted { needs_code: true } => {
                self.auth = AuthStage::NeedCode(attempt);
                only_keyboard_interactive()
            }
            FirstFactor::Ticket { target } => {
                if attempt.target.as_ref().is_some_and(|t| *t != target) {
                    return self.failed(user, method).await;
                }
                self.signed_in_as(&attempt, Some(target))
            }
            FirstFactor::Rejected => {
                self.auth = AuthStage::Start;
                self.failed(user, method).await
            }
        }
    }

    pub(super) async fn password_sign_in(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<Auth, FrontError> {
        if let Err(refused) = self.may_attempt().await {
            return Ok(refused);
        }
        let attempt = self.attempt(user);
        let outcome = self.shared.control.check_password(&attempt, password).await;
        Ok(self.first_factor(user, attempt, outcome, "password").await)
    }

    pub(super) async fn key_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, FrontError> {
        // A probe: no failure is counted, no delay (OpenSSH offers each key).
        let attempt = self.attempt(user);
        let key = offered_key(offer.public_key);
        if self
            .shared
            .control
            .key_is_registered(&attempt.person, &key)
            .await
        {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    pub(super) async fn key_sign_in(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, FrontError> {
        if let Err(refused) = self.may_attempt().await {
            return Ok(refused);
        }
        let attempt = self.attempt(user);
        let key = offered_key(key.public_key);
        let outcome = self.shared.control.check_public_key(&attempt, &key).await;
        Ok(self.first_factor(user, attempt, outcome, "publickey").await)
    }

    pub(super) async fn keyboard_interactive_sign_in<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, FrontError> {
        let attempt = self.attempt(user);
        let Some(mut response) = response else {
            // A new keyboard-interactive exchange.
            return Ok(match &self.auth {
                AuthStage::NeedCode(first) | AuthStage::AskedCode(first) if *first == attempt => {
                    self.auth = AuthStage::AskedCode(attempt);
                    prompt(CODE_PROMPT)
                }
                _ => {
                    self.auth = AuthStage::AskedPassword(attempt);
                    prompt(PASSWORD_PROMPT)
                }
            });
        };
        let answer = response
            .next()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if let Err(refused) = self.may_attempt().await {
            return Ok(refused);
        }
        match self.auth.clone() {
            AuthStage::AskedCode(first) if first == attempt => {
                if self
                    .shared
                    .control
                    .check_code(&attempt, answer.trim())
                    .await
                {
                    Ok(self.signed_in_as(&attempt, None))
                } else {
                    // The first factor stands; the person may retry the code.
                    self.auth = AuthStage::NeedCode(first);
                    Ok(self.failed(user, "one-time code").await)
                }
            }
            AuthStage::AskedPassword(first) if first == attempt => {
                let outcome = self.shared.control.check_password(&attempt, &answer).await;
                match outcome {
                    FirstFactor::Accepted { needs_code: true } => {
                        self.auth = AuthStage::AskedCode(attempt);
                        Ok(prompt(CODE_PROMPT))
                    }
                    other => Ok(self
                        .first_factor(user, attempt, other, "keyboard-interactive")
                        .await),
                }
            }
            _ => {
                self.auth = AuthStage::Start;
                Ok(self.failed(user, "keyboard-interactive").await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_split_at_the_first_at() {
        assert_eq!(
            split_user("tanaka@fa-db01"),
            Some(("tanaka".into(), Some("fa-db01".into())))
        );
        assert_eq!(split_user("tanaka"), Some(("tanaka".into(), None)));
        assert_eq!(split_user("tanaka@"), Some(("tanaka".into(), None)));
        assert_eq!(
            split_user("tanaka@fa@db"),
            Some(("tanaka".into(), Some("fa@db".into())))
        );
        assert_eq!(split_user("@fa-db01"), None);
        assert_eq!(split_user(""), None);
        assert_eq!(split_user("tana\nka"), None);
    }
}
