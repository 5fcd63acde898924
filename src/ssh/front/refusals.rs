//! Everything the front refuses (forwarding of any kind, X11, the agent,
//! subsystems, file-transfer commands) goes through one handler: audited
//! with its kind, recorded in the session when there is one, and explained
//! to the person with one message, `sekisho: <what> is not allowed; sekisho
//! permits screen access only`. Only the way the refusal is answered
//! depends on where the request arrived ([`Answer`]).

use bytes::Bytes;
use russh::ChannelOpenFailure;
use russh::server::{ChannelOpenHandle, Session};

use super::{Connection, FrontError};
use crate::ssh::control::{RefusedKind, SessionEvent, SshControl};

/// A request the gateway will not relay.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    kind: RefusedKind,
    /// For the audit log and the recording (the request as it came).
    detail: String,
    /// The subsystem or program, named in the message to the person.
    name: Option<String>,
}

impl Refusal {
    pub(super) fn new(kind: RefusedKind, detail: impl Into<String>) -> Self {
        Refusal {
            kind,
            detail: detail.into(),
            name: None,
        }
    }

    /// Names the subsystem or program in the message to the person.
    pub(super) fn naming(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// What the person is told (after `sekisho: `).
    pub(super) fn message(&self) -> String {
        let name = self.name.as_deref().unwrap_or_default();
        let what = match self.kind {
            RefusedKind::Subsystem => format!("the {name} subsystem (file transfer)"),
            RefusedKind::FileTransferExec => format!("file transfer ({name})"),
            RefusedKind::LocalForward | RefusedKind::RemoteForward => "port forwarding".into(),
            RefusedKind::StreamLocalForward => "socket forwarding".into(),
            RefusedKind::AgentForward => "agent forwarding".into(),
            RefusedKind::X11Forward => "X11 forwarding".into(),
            RefusedKind::Other => "this request".into(),
        };
        format!("{what} is not allowed; sekisho permits screen access only")
    }
}

/// Where a refused request arrived, so how it is answered.
pub(super) enum Answer {
    /// A channel open: rejected as administratively prohibited with the
    /// message as reason, and the message told on an open channel.
    ChannelOpen(ChannelOpenHandle),
    /// A global request (`tcpip-forward`…): the caller answers false; the
    /// message is told on an open channel, or kept for the first one.
    Global,
    /// A request on a channel that stays open (agent, `x11-req`): the
    /// message goes to that channel's stderr; the caller answers failure.
    OnChannel(russh::ChannelId),
    /// A request that ends its channel (subsystem, file-transfer exec):
    /// the message goes to stderr and the channel exits with status 1.
    EndChannel(russh::ChannelId),
}

impl<C: SshControl> Connection<C> {
    /// Refuses a request: audits and records it, and tells the person.
    pub(super) async fn refuse(
        &mut self,
        refusal: Refusal,
        answer: Answer,
        session: &mut Session,
    ) -> Result<(), FrontError> {
        if let Answer::OnChannel(channel) | Answer::EndChannel(channel) = answer {
            self.flush_notices(channel, session);
        }
        self.audit_refusal(&refusal).await;
        let message = refusal.message();
        match answer {
            Answer::ChannelOpen(reply) => {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: 1,
                        reason: format!("sekisho: {message}"),
                    })
                    .await;
                self.notice(message, session);
            }
            Answer::Global => self.notice(message, session),
            Answer::OnChannel(channel) => {
                let line = format!("sekisho: {message}\r\n");
                let _ = session.extended_data(channel, 1, Bytes::from(line));
            }
            Answer::EndChannel(channel) => self.end_channel_with(channel, &message, session),
        }
        Ok(())
    }

    /// Audits and records a refusal.
    async fn audit_refusal(&self, refusal: &Refusal) {
        let (kind, detail) = (refusal.kind, refusal.detail.as_str());
        let live = self.live();
        tracing::warn!(
            user = %self.person(), source = %self.source,
            session = ?live.as_ref().map(|l| l.session_id),
            kind = kind.as_str(), detail, "ssh request refused"
        );
        if let Some(live) = &live {
            live.record(SessionEvent::ChannelRefused {
                kind,
                detail: detail.to_string(),
            })
            .await;
        }
        self.shared
            .control
            .channel_refused(
                &self.person(),
                self.source,
                live.map(|l| l.session_id),
                kind,
                detail,
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_reads_the_same() {
        let cases = [
            (
                Refusal::new(RefusedKind::Subsystem, "sftp").naming("sftp"),
                "the sftp subsystem (file transfer) is not allowed",
            ),
            (
                Refusal::new(RefusedKind::FileTransferExec, "scp -f x").naming("scp"),
                "file transfer (scp) is not allowed",
            ),
            (
                Refusal::new(RefusedKind::LocalForward, "direct-tcpip to h:22"),
                "port forwarding is not allowed",
            ),
            (
                Refusal::new(RefusedKind::AgentForward, ""),
                "agent forwarding is not allowed",
            ),
            (
                Refusal::new(RefusedKind::X11Forward, ""),
                "X11 forwarding is not allowed",
            ),
        ];
        for (refusal, start) in cases {
            let message = refusal.message();
            assert!(message.starts_with(start), "{message}");
            assert!(
                message.ends_with("; sekisho permits screen access only"),
                "{message}"
            );
        }
    }
}
