//! One RDP connection, from sign-in to close: the session's steps in
//! order — sign in → authorize → open the recording → (audit refused
//! channels) → connect the target → register the live session → relay →
//! close and seal. `ssh::session` is the SSH twin; the protocol-independent
//! parts of each step are `session::Services`, reached through
//! [`RdpControl`].

use std::net::SocketAddr;
use std::sync::Arc;

use ironrdp_async::Framed;
use ironrdp_pdu::rdp::server_error_info::{
    ErrorInfo, ProtocolIndependentCode, ProtocolIndependentConnectionBrokerCode,
};
use ironrdp_pdu::rdp::server_license::{LicensePdu, LicensingErrorMessage};
use ironrdp_tokio::TokioStream;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::control::{
    ChannelKind, FrontSecurity, RdpControl, RdpRecorder as _, SessionStart, SignIn,
};
use super::front::{
    FRONT_IO_CHANNEL, FRONT_USER_CHANNEL, refusal_pdus, refuse_client, send_indication,
};
use super::relay::{ChannelMap, Relay};
use super::rules::ChannelVerdict;
use super::{FrontTls, GatewayOptions, RdpError, back, control, front, relay};
use crate::admission::Pending;

/// One client connection, start to end.
pub async fn run<C: RdpControl>(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: FrontTls,
    control: Arc<C>,
    options: GatewayOptions,
    mut admitted: Pending,
) -> Result<(), RdpError> {
    let _ = tcp.set_nodelay(true);
    let source = crate::config::canonical_ip(peer.ip());
    // A client that stalls before signing in must not hold a task forever
    // (`[rdp] login_grace`).
    let accept = front::accept(
        tcp,
        &tls,
        options.offer_nla,
        control.as_ref(),
        source,
        &options.admission,
    );
    let mut front = tokio::time::timeout(options.login_grace, accept)
        .await
        .map_err(|_| RdpError::Refused("client handshake timed out".into()))??;

    // NLA: the name and the secret are the ones proved over CredSSP (the
    // Client Info PDU then usually carries no password).
    let (username, domain, secret, security) = match front.nla.take() {
        Some(id) => (id.username, id.domain, id.secret, FrontSecurity::Nla),
        None => {
            let creds = &front.client_info.credentials;
            (
                creds.username.clone(),
                creds.domain.clone(),
                creds.password.clone(),
                FrontSecurity::Tls,
            )
        }
    };
    let Some((user, target)) = front::split_target(&username, domain.as_deref()) else {
        let reason = "user name must name the target as person@target or target\\person";
        refuse_client(
            &mut front.framed,
            ProtocolIndependentCode::ServerDeniedConnection,
        )
        .await;
        return Err(RdpError::Refused(reason.into()));
    };
    let sign_in = SignIn {
        user,
        target: target.clone(),
        secret,
        source,
        security,
    };
    // The bastion secret is not kept beyond this point.
    front.client_info.credentials.password.clear();
    // Over TLS the secret is checked here (with NLA it was, in CredSSP).
    if security == FrontSecurity::Tls
        && let Err(refusal) = options.admission.attempt(source, "rdp")
    {
        refuse_client(
            &mut front.framed,
            ProtocolIndependentCode::ServerDeniedConnection,
        )
        .await;
        return Err(RdpError::Refused(refusal.describe().into()));
    }
    let person = match control.authenticate(&sign_in).await {
        Ok(p) => p,
        Err(refusal) => {
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerDeniedConnection,
            )
            .await;
            return Err(RdpError::Refused(refusal.reason));
        }
    };
    drop(sign_in);
    admitted.signed_in();
    let grant = match control.authorize(&person, &target, source).await {
        Ok(g) => g,
        Err(refusal) => {
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerInsufficientPrivileges,
            )
            .await;
            return Err(RdpError::Refused(refusal.reason));
        }
    };
    info!(person = %person.user, target = %grant.target, address = %grant.address, "RDP session authorized");

    let session_id = grant.session_id;
    let forwarded: Vec<_> = front
        .channels
        .iter()
        .filter(|c| c.verdict.is_allowed())
        .collect();
    let start = SessionStart {
        session_id,
        person: person.clone(),
        target: grant.target.clone(),
        source,
        parent_session: grant.parent_session,
        desktop_width: front.gcc.core.desktop_width,
        desktop_height: front.gcc.core.desktop_height,
        keyboard_layout: front.gcc.core.keyboard_layout,
        keyboard_type: keyboard_type_code(front.gcc.core.keyboard_type),
        keyboard_subtype: front.gcc.core.keyboard_subtype,
        io_channel: FRONT_IO_CHANNEL,
        user_channel: FRONT_USER_CHANNEL,
        channels: forwarded
            .iter()
            .map(|c| (c.name.clone(), c.front_id))
            .collect(),
    };
    let recorder = match control.open_recording(&start).await {
        Ok(r) => r,
        Err(refusal) => {
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerDeniedConnection,
            )
            .await;
            return Err(RdpError::Recording(refusal.reason));
        }
    };
    let recorder = Arc::new(Mutex::new(recorder));
    for refused in front.channels.iter().filter(|c| !c.verdict.is_allowed()) {
        let ChannelVerdict::Refused { reason } = &refused.verdict else {
            continue;
        };
        info!(channel = %refused.name, reason, "static channel refused");
        control
            .channel_refused(session_id, ChannelKind::Static, &refused.name, reason)
            .await;
        let event = control::RdpEvent::ChannelRefused {
            name: refused.name.clone(),
            reason: (*reason).to_owned(),
        };
        if let Err(r) = recorder.lock().await.record(event).await {
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerDeniedConnection,
            )
            .await;
            return Err(RdpError::Recording(r.reason));
        }
    }

    let result = connect_and_relay(
        &control,
        session_id,
        &start,
        front,
        &grant,
        recorder.clone(),
        &options,
    )
    .await;
    let (how, reason) = match &result {
        Ok(()) => (control::SessionClose::Closed, "closed".to_owned()),
        Err(RdpError::TargetLost(why)) => (
            control::SessionClose::TargetLost,
            format!("the connection to {} was lost ({why})", grant.target),
        ),
        Err(e) => (control::SessionClose::Closed, e.to_string()),
    };
    if how == control::SessionClose::TargetLost {
        warn!(session = %session_id, %reason, "target lost");
    }
    let failure = match &result {
        Err(RdpError::Back(e)) => Some(e.failure()),
        _ => None,
    };
    // Recording is sealed whatever happened.
    match Arc::try_unwrap(recorder).map(Mutex::into_inner) {
        Ok(recorder) => {
            if let Err(r) = recorder.finish().await {
                warn!(reason = %r.reason, "sealing the recording failed");
            }
        }
        // The relay tasks hold no clone once run_session returned.
        Err(_) => warn!("recording still shared at close; not sealed"),
    }
    control
        .session_closed(session_id, how, &reason, failure)
        .await;
    result
}

async fn connect_and_relay<C: RdpControl>(
    control: &Arc<C>,
    session_id: uuid::Uuid,
    start: &SessionStart,
    mut front: front::FrontSession,
    grant: &control::TargetGrant,
    recorder: Arc<Mutex<C::Recorder>>,
    options: &GatewayOptions,
) -> Result<(), RdpError> {
    let forwarded: Vec<front::FrontChannel> = front
        .channels
        .iter()
        .filter(|c| c.verdict.is_allowed())
        .cloned()
        .collect();
    let back = match back::connect(back::BackRequest {
        grant,
        client_gcc: &front.gcc,
        channels: forwarded.iter().map(|c| c.def.clone()).collect(),
        client_info: &front.client_info,
    })
    .await
    {
        Ok(b) => b,
        Err(e) => {
            warn!(phase = e.phase.as_str(), kind = e.kind.as_str(), error = %e, "target connection failed");
            refuse_client(
                &mut front.framed,
                ProtocolIndependentCode::ServerDeniedConnection,
            )
            .await;
            return Err(e.into());
        }
    };

    let mut map = ChannelMap::new(
        FRONT_USER_CHANNEL,
        back.user_channel,
        FRONT_IO_CHANNEL,
        back.io_channel,
    );
    for (channel, back_id) in forwarded.iter().zip(back.channel_ids.iter()) {
        map.link_named(&channel.name, channel.front_id, *back_id);
    }
    for channel in front.channels.iter().filter(|c| !c.verdict.is_allowed()) {
        map.refuse(channel.front_id, &channel.name);
    }

    // Licensing towards the client: the gateway says "valid client".
    let license: LicensePdu = LicensingErrorMessage::new_valid_client()
        .map_err(|e| RdpError::protocol("encoding license PDU", e))?
        .into();
    send_indication(&mut front.framed, &license).await?;

    let mut kill = control.register_live(start).await;
    let relay = Arc::new(Relay {
        control: control.clone(),
        session_id,
        map,
        recorder,
        share: std::sync::Mutex::new(relay::ShareState::new(
            start.desktop_width,
            start.desktop_height,
        )),
        dvc_gate: std::sync::Mutex::new(relay::DvcGate::default()),
        last_input: std::sync::Mutex::new(tokio::time::Instant::now()),
    });

    let (front_stream, front_left) = front.framed.into_inner();
    let (back_stream, back_left) = back.framed.into_inner();
    let (front_read, front_write) = tokio::io::split(front_stream);
    let (back_read, back_write) = tokio::io::split(back_stream);
    let front_reader = Framed::<TokioStream<_>>::new_with_leftover(front_read, front_left);
    let back_reader = Framed::<TokioStream<_>>::new_with_leftover(back_read, back_left);
    let front_write = Arc::new(Mutex::new(front_write));
    let back_write = Arc::new(Mutex::new(back_write));

    let first_action = ironrdp_pdu::find_size(&back.first_pdu)
        .ok()
        .flatten()
        .map(|info| info.action)
        .unwrap_or(ironrdp_pdu::Action::X224);
    relay
        .forward_from_target(
            first_action,
            back.first_pdu.freeze(),
            &front_write,
            &back_write,
        )
        .await?;

    let up = relay.client_to_target(front_reader, back_write.clone());
    let down = relay.target_to_client(back_reader, front_write.clone(), back_write.clone());
    let keyframes = async {
        if options.keyframe_interval.is_zero() {
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(options.keyframe_interval);
        tick.tick().await; // the first tick is immediate; the session has just drawn itself
        loop {
            tick.tick().await;
            relay.request_keyframe(&back_write).await?;
        }
    };
    let idle = async {
        if options.idle_timeout.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let last = *relay.last_input.lock().unwrap_or_else(|p| p.into_inner());
            let deadline = last + options.idle_timeout;
            if tokio::time::Instant::now() >= deadline {
                return options.idle_timeout;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let result = tokio::select! {
        r = up => r,
        r = down => r,
        r = keyframes => r,
        limit = idle => {
            info!(?limit, "session idle");
            if let Ok(bytes) = refusal_pdus(ErrorInfo::ProtocolIndependentCode(ProtocolIndependentCode::IdleTimeout), true) {
                let _ = front_write.lock().await.write_all(&bytes).await;
            }
            Err(RdpError::Refused(format!("idle for {limit:?}")))
        }
        reason = kill.killed() => {
            info!(%reason, "session killed");
            if let Ok(bytes) = refusal_pdus(ErrorInfo::ProtocolIndependentCode(ProtocolIndependentCode::RpcInitiatedDisconnect), true) {
                let _ = front_write.lock().await.write_all(&bytes).await;
            }
            Err(RdpError::Refused(format!("killed: {reason}")))
        }
    };
    if matches!(result, Err(RdpError::TargetLost(_))) {
        // Tell the person why the desktop went away (best effort).
        if let Ok(bytes) = refusal_pdus(TARGET_LOST, true) {
            let _ = front_write.lock().await.write_all(&bytes).await;
        }
    }
    // Close both sides; errors here change nothing.
    let _ = front_write.lock().await.shutdown().await;
    let _ = back_write.lock().await.shutdown().await;
    match result {
        Err(RdpError::TargetClosed) => Ok(()),
        other => other,
    }
}

/// What the client is told when the target's connection dies under a live
/// session. No protocol-independent code means "the server behind me went
/// away": sekisho plays the part of a connection broker (it routes the
/// client to a target endpoint), and of the broker's codes
/// ERRINFO_CB_LOADING_DESTINATION (0x402, MS-RDPBCGR 2.2.5.1.1) is the one
/// about the target endpoint disconnecting from the broker. FreeRDP prints
/// it as "The target endpoint ... is disconnecting from the Connection
/// Broker" and does not reconnect. (ERRINFO_SERVER_SHUTDOWN would claim a
/// shutdown nobody saw, and FreeRDP 3 does not know that code.)
pub(crate) const TARGET_LOST: ErrorInfo = ErrorInfo::ProtocolIndependentConnectionBrokerCode(
    ProtocolIndependentConnectionBrokerCode::LoadingDestination,
);

fn keyboard_type_code(t: ironrdp_pdu::gcc::KeyboardType) -> u32 {
    t.0
}
