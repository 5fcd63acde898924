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
use super::front::{FRONT_IO_CHANNEL, FRONT_USER_CHANNEL, refusal_pdus, send_indication};
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
        options.nla,
        control.as_ref(),
        source,
        &options.admission,
    );
    let mut front = tokio::time::timeout(options.login_grace, accept)
        .await
        .map_err(|_| RdpError::Refused("client handshake timed out".into()))??;

    // A client coming back after a drop answers sekisho's auto-reconnect
    // cookie: a valid answer stands for the whole sign-in (the code it
    // would replay is spent).
    let resumed = match front.client_info.extra_info.optional_data.auto_reconnect() {
        Some(answer) => match control.resume(answer, source).await {
            Ok(r) => r,
            Err(refusal) => {
                return Err(refuse_shown(
                    &mut front,
                    ProtocolIndependentCode::ServerDeniedConnection,
                    refusal,
                    &options,
                )
                .await);
            }
        },
        None => None,
    };
    let (person, target, resumed_from) = match resumed {
        Some(r) => {
            front.client_info.credentials.password.clear();
            admitted.signed_in();
            info!(person = %r.user, target = %r.target, from = %r.session_id, "RDP session resumed with an auto-reconnect cookie");
            (
                control::Person { user: r.user },
                r.target,
                Some(r.session_id),
            )
        }
        None if wants_screen(&front, &options) => {
            let (person, target) =
                sign_in_on_screen(&mut front, source, control.as_ref(), &options).await?;
            admitted.signed_in();
            (person, target, None)
        }
        None => {
            let (person, target) = sign_in(&mut front, source, control.as_ref(), &options).await?;
            admitted.signed_in();
            (person, target, None)
        }
    };
    let grant = match control.authorize(&person, &target, source).await {
        Ok(g) => g,
        Err(refusal) => {
            return Err(refuse_shown(
                &mut front,
                ProtocolIndependentCode::ServerInsufficientPrivileges,
                refusal,
                &options,
            )
            .await);
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
        resumes: resumed_from,
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
            front::refuse_front(&mut front, ProtocolIndependentCode::ServerDeniedConnection).await;
            return Err(RdpError::Recording(refusal.reason));
        }
    };
    let recorder = Arc::new(Mutex::new(recorder));
    if let Some(from) = resumed_from {
        let event = control::RdpEvent::Resumed { from };
        if let Err(r) = recorder.lock().await.record(event).await {
            front::refuse_front(&mut front, ProtocolIndependentCode::ServerDeniedConnection).await;
            return Err(RdpError::Recording(r.reason));
        }
    }
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
            front::refuse_front(&mut front, ProtocolIndependentCode::ServerDeniedConnection).await;
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
        Err(e @ RdpError::ClientLost(_)) => (control::SessionClose::ClientLost, e.to_string()),
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

/// How long a person has to type ID, password and code on the drawn
/// sign-in screen.
const SCREEN_SIGN_IN_TIME: std::time::Duration = std::time::Duration::from_secs(180);
/// Refused attempts on the drawn screen before the connection is closed
/// (each is a counted failure, as over SSH).
const SCREEN_ATTEMPTS: usize = 3;

/// A TLS client without a password gets the drawn sign-in screen, when
/// there is a font to draw it. (A password with a user name that names no
/// target signs in as sent and then chooses its target on the screen; a
/// password without its code is asked for the code there: `sign_in`.)
fn wants_screen(front: &front::FrontSession, options: &GatewayOptions) -> bool {
    front.nla.is_none()
        && options.screen_font.is_some()
        && front.client_info.credentials.password.is_empty()
}

/// The drawn sign-in screen: ID, password and code typed on the client's
/// keyboard (its announced layout, US or Japanese 106/109), checked as a
/// TLS sign-in. Nothing typed here is logged or recorded except the ID the
/// sign-in audits.
async fn sign_in_on_screen<C: RdpControl>(
    front: &mut front::FrontSession,
    source: std::net::IpAddr,
    control: &C,
    options: &GatewayOptions,
) -> Result<(control::Person, String), RdpError> {
    let creds = &front.client_info.credentials;
    let prefill = front::split_target(&creds.username, creds.domain.as_deref())
        .map(|(p, t)| format!("{p}@{t}"))
        .or_else(|| front::person_only(&creds.username, creds.domain.as_deref()))
        .unwrap_or_default();
    front.client_info.credentials.password.clear();
    let form = super::screen::SignInForm::new(&prefill);
    sign_in_with_form(front, source, control, options, form).await
}

/// The drawn form's loop: keys in, redraws out, a sign-in on Enter in the
/// code field; then, when the ID named no target, the choice of targets.
async fn sign_in_with_form<C: RdpControl>(
    front: &mut front::FrontSession,
    source: std::net::IpAddr,
    control: &C,
    options: &GatewayOptions,
    mut form: super::screen::SignInForm,
) -> Result<(control::Person, String), RdpError> {
    use super::screen::{FormAction, SignInForm};

    let Some(font) = options.screen_font.clone() else {
        return Err(RdpError::Refused("no screen font".into()));
    };
    let (width, height) = (front.gcc.core.desktop_width, front.gcc.core.desktop_height);
    show_drawn(front, &form.draw(&font, width, height)).await?;
    info!("drawn sign-in screen shown");
    let mut keyboard = screen_keyboard(front);
    let deadline = tokio::time::Instant::now() + SCREEN_SIGN_IN_TIME;
    let mut attempts = 0;
    loop {
        let Some(typed) = read_typed(front, &mut keyboard, deadline).await? else {
            let refusal = control::Refusal::new("no sign-in on the screen in time");
            return Err(refuse_shown(
                front,
                ProtocolIndependentCode::ServerDeniedConnection,
                refusal,
                options,
            )
            .await);
        };
        let mut redraw = false;
        for t in &typed {
            match form.feed(t) {
                FormAction::Nothing => {}
                FormAction::Redraw => redraw = true,
                FormAction::Submit => {
                    redraw = true;
                    let named = front::split_target(&form.id, None)
                        .map(|(user, target)| (user, Some(target)))
                        .or_else(|| front::person_only(&form.id, None).map(|user| (user, None)));
                    let Some((user, target)) = named else {
                        form.failed(
                            "ID は 利用者@接続先 か 利用者 の形で入力してください",
                            "Type the ID as person@target or person",
                        );
                        continue;
                    };
                    if let Err(refusal) = options.admission.attempt(source, "rdp") {
                        let refusal = control::Refusal::new(refusal.describe());
                        return Err(refuse_shown(
                            front,
                            ProtocolIndependentCode::ServerDeniedConnection,
                            refusal,
                            options,
                        )
                        .await);
                    }
                    let sign_in = SignIn {
                        user,
                        target: target.clone().unwrap_or_default(),
                        secret: form.secret().to_string(),
                        source,
                        security: FrontSecurity::Tls,
                    };
                    match control.authenticate(&sign_in).await {
                        Ok(person) => {
                            let target = match target {
                                Some(t) => t,
                                None => {
                                    choose_target(front, &person, source, control, options).await?
                                }
                            };
                            return Ok((person, target));
                        }
                        Err(refusal) => {
                            attempts += 1;
                            if attempts >= SCREEN_ATTEMPTS {
                                return Err(refuse_shown(
                                    front,
                                    ProtocolIndependentCode::ServerDeniedConnection,
                                    refusal,
                                    options,
                                )
                                .await);
                            }
                            form.failed("サインインできませんでした", "Sign-in failed");
                        }
                    }
                }
            }
        }
        if redraw {
            let canvas = form.draw(&font, width, height);
            front::paint(
                &mut front.framed,
                &canvas,
                Some(SignInForm::panel(width, height)),
            )
            .await?;
        }
    }
}

/// A signed-in person who named no target: the one target they may reach
/// over RDP now, or their choice among several on the drawn screen. None is
/// a refusal shown with its reason (audited by `offer_targets`). The
/// chosen target then goes through `authorize` like a named one.
async fn choose_target<C: RdpControl>(
    front: &mut front::FrontSession,
    person: &control::Person,
    source: std::net::IpAddr,
    control: &C,
    options: &GatewayOptions,
) -> Result<String, RdpError> {
    use super::screen::{ChoiceAction, SignInForm, TargetChoice};

    let offered = control.offer_targets(person, source).await;
    let names: Vec<&str> = offered.iter().map(|t| t.name.as_str()).collect();
    info!(person = %person.user, targets = ?names, "targets offered");
    let font = match (offered.len(), options.screen_font.clone()) {
        (1, _) => return Ok(offered[0].name.clone()),
        (2.., Some(font)) => font,
        _ => {
            let refusal = control::Refusal::no_reachable_target();
            return Err(refuse_shown(
                front,
                ProtocolIndependentCode::ServerInsufficientPrivileges,
                refusal,
                options,
            )
            .await);
        }
    };
    let (width, height) = (front.gcc.core.desktop_width, front.gcc.core.desktop_height);
    let mut choice = TargetChoice::new(
        offered
            .into_iter()
            .map(|t| (t.name, t.system, t.until))
            .collect(),
    );
    show_drawn(front, &choice.draw(&font, width, height)).await?;
    info!("target choice shown");
    let mut keyboard = screen_keyboard(front);
    let deadline = tokio::time::Instant::now() + SCREEN_SIGN_IN_TIME;
    loop {
        let Some(typed) = read_typed(front, &mut keyboard, deadline).await? else {
            break;
        };
        let mut redraw = false;
        for t in &typed {
            match choice.feed(t) {
                ChoiceAction::Nothing => {}
                ChoiceAction::Redraw => redraw = true,
                ChoiceAction::Chosen(row) => {
                    let name = choice.targets[row].0.clone();
                    info!(target = %name, "target chosen on the screen");
                    return Ok(name);
                }
                ChoiceAction::Cancel => {
                    let refusal = control::Refusal::by_rule("no_target_chosen", "no target chosen");
                    return Err(refuse_shown(
                        front,
                        ProtocolIndependentCode::ServerDeniedConnection,
                        refusal,
                        options,
                    )
                    .await);
                }
            }
        }
        if redraw {
            let canvas = choice.draw(&font, width, height);
            front::paint(
                &mut front.framed,
                &canvas,
                Some(SignInForm::panel(width, height)),
            )
            .await?;
        }
    }
    let refusal = control::Refusal::by_rule("no_target_chosen", "no target chosen in time");
    Err(refuse_shown(
        front,
        ProtocolIndependentCode::ServerDeniedConnection,
        refusal,
        options,
    )
    .await)
}

/// Puts a drawn screen on the client: the first one activates sekisho's
/// own share, later ones repaint it.
async fn show_drawn(
    front: &mut front::FrontSession,
    canvas: &super::screen::Canvas,
) -> Result<(), RdpError> {
    if front.screen_active {
        front::paint(&mut front.framed, canvas, None).await
    } else {
        front::show_screen(&mut front.framed, canvas).await?;
        front.screen_active = true;
        Ok(())
    }
}

/// The client's keyboard as it announced it (US or Japanese 106/109).
fn screen_keyboard(front: &front::FrontSession) -> crate::protocol::rdp::keyboard::Keyboard {
    use crate::protocol::rdp::keyboard::{Keyboard, KeyboardLayout};
    let layout = KeyboardLayout::from_ids(
        Some(front.gcc.core.keyboard_layout),
        front.gcc.core.keyboard_type.0,
        front.gcc.core.keyboard_subtype,
    );
    Keyboard::new(&layout)
}

/// What the next input PDU typed on a drawn screen (often nothing: mouse
/// moves, key releases); `None` when `deadline` passed first. What is typed
/// is returned only, never logged.
async fn read_typed(
    front: &mut front::FrontSession,
    keyboard: &mut crate::protocol::rdp::keyboard::Keyboard,
    deadline: tokio::time::Instant,
) -> Result<Option<Vec<crate::protocol::rdp::keyboard::Typed>>, RdpError> {
    use crate::protocol::rdp::input::{Input, decode_fast_path, decode_slow_path};

    let (action, pdu) = match tokio::time::timeout_at(deadline, front.framed.read_pdu()).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return Err(RdpError::io("reading the sign-in screen's input", e)),
        Err(_) => return Ok(None),
    };
    let decoded = match action {
        ironrdp_pdu::Action::FastPath => decode_fast_path(&pdu),
        ironrdp_pdu::Action::X224 => {
            match ironrdp_core::decode::<
                ironrdp_pdu::x224::X224<ironrdp_pdu::mcs::SendDataRequest<'_>>,
            >(&pdu)
            {
                Ok(ironrdp_pdu::x224::X224(request)) => {
                    decode_slow_path(request.user_data.as_ref())
                }
                Err(_) => return Ok(Some(Vec::new())),
            }
        }
    };
    let mut typed = Vec::new();
    for input in decoded.inputs {
        match input {
            Input::Key {
                code,
                extended,
                extended1,
                release,
            } => typed.extend(keyboard.key(code, extended, extended1, release)),
            Input::Unicode { unit, release } => keyboard.unicode(unit, release, &mut typed),
            Input::Sync { caps, num } => keyboard.sync(caps, num),
            Input::Click => {}
        }
    }
    Ok(Some(typed))
}

/// Refuse a client that has signed in or tried to (after its Client Info
/// PDU): the refusal screen when there is a font, then the error code;
/// gives back the error the session ends with.
async fn refuse_shown(
    front: &mut front::FrontSession,
    code: ProtocolIndependentCode,
    refusal: control::Refusal,
    options: &GatewayOptions,
) -> RdpError {
    let screen = options.screen_font.as_deref().map(|font| {
        (
            font,
            super::screen::refusal_text(refusal.rule, &refusal.reason),
        )
    });
    front::refuse_with_screen(front, code, screen, options.refusal_screen).await;
    RdpError::Refused(refusal.reason)
}

/// The sign-in from the Client Info PDU (TLS) or CredSSP (NLA): the person
/// and the target they named. A refusal is told to the client.
async fn sign_in<C: RdpControl>(
    front: &mut front::FrontSession,
    source: std::net::IpAddr,
    control: &C,
    options: &GatewayOptions,
) -> Result<(control::Person, String), RdpError> {
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
    // The bastion secret is not kept in the client's settings.
    front.client_info.credentials.password.clear();
    // Over TLS with a screen to draw on, a bare person signs in and then
    // chooses the target there.
    let screen = security == FrontSecurity::Tls && options.screen_font.is_some();
    let named = front::split_target(&username, domain.as_deref())
        .map(|(user, target)| (user, Some(target)))
        .or_else(|| {
            front::person_only(&username, domain.as_deref())
                .filter(|_| screen)
                .map(|user| (user, None))
        });
    let Some((user, target)) = named else {
        let refusal = control::Refusal::new(
            "the user name must name the target as person@target or target\\person",
        );
        return Err(refuse_shown(
            front,
            ProtocolIndependentCode::ServerDeniedConnection,
            refusal,
            options,
        )
        .await);
    };
    let sign_in = SignIn {
        user,
        target: target.clone().unwrap_or_default(),
        secret,
        source,
        security,
    };
    // A password without its code, outside the sign-in window: the drawn
    // screen asks for the code, keeping the password masked and unchecked.
    // Checking it first would tell a guesser whether it was right before
    // the code is (SSH never says which factor failed), and refusing would
    // count a failure for a client that only lacked a field; so nothing is
    // checked or counted until the code is typed, and then both factors
    // together, once (one attempt: one success or one failure).
    if screen && control.code_missing(&sign_in).await {
        let id = match &target {
            Some(t) => format!("{}@{t}", sign_in.user),
            None => sign_in.user.clone(),
        };
        info!("password without a one-time code: asking for the code on the drawn screen");
        let form =
            super::screen::SignInForm::asking_code(&id, zeroize::Zeroizing::new(sign_in.secret));
        return sign_in_with_form(front, source, control, options, form).await;
    }
    // Over TLS the secret is checked here (with NLA it was, in CredSSP).
    if security == FrontSecurity::Tls
        && let Err(refusal) = options.admission.attempt(source, "rdp")
    {
        front::refuse_front(front, ProtocolIndependentCode::ServerDeniedConnection).await;
        return Err(RdpError::Refused(refusal.describe().into()));
    }
    match control.authenticate(&sign_in).await {
        Ok(p) => {
            let target = match target {
                Some(t) => t,
                None => choose_target(front, &p, source, control, options).await?,
            };
            Ok((p, target))
        }
        Err(refusal) => Err(refuse_shown(
            front,
            ProtocolIndependentCode::ServerDeniedConnection,
            refusal,
            options,
        )
        .await),
    }
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
            front::refuse_front(&mut front, ProtocolIndependentCode::ServerDeniedConnection).await;
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

    if front.screen_active {
        // Signed in on the drawn screen: the client is licensed and active
        // in sekisho's share; the target's Demand Active starts its own.
        front::deactivate_screen(&mut front.framed).await?;
    } else {
        // Licensing towards the client: the gateway says "valid client".
        let license: LicensePdu = LicensingErrorMessage::new_valid_client()
            .map_err(|e| RdpError::protocol("encoding license PDU", e))?
            .into();
        send_indication(&mut front.framed, &license).await?;
    }

    let mut kill = control.register_live(start).await;
    let reconnect_cookie = control.issue_reconnect(start).await;
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
        reconnect_cookie: std::sync::Mutex::new(reconnect_cookie),
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
