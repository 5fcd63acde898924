//! `sekisho request …`: work requests (作業申請) from filing to approval,
//! revocation and close.
//!
//! Who acts: the CLI runs on the bastion as an administrator's OS account
//! (often root), which is not the person filing or approving. Every command
//! that changes a request therefore names the person with `--as NAME`
//! (or `SEKISHO_AS`): a registered, enabled sekisho user, whose role and
//! place in the system's approval route decide what they may do. The OS
//! account that ran the command is kept with each audit event (`via`), so
//! the log shows both. Whoever can run this CLI can also edit the database,
//! so `--as` is a statement of who acts, not a proof; the web console,
//! where people sign in themselves, is the place for self-service.

use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;

use super::Global;
use super::policy::parse_time;
use super::user::{local_time, open};
use crate::config::Config;
use crate::policy::{PolicySet, Protocol};
use crate::procedure::state::{Action, RequestState};
use crate::procedure::{self, Acting, Draft, Urgency};
use crate::store::{Store, WorkRequest, WorkRequestFilter};

/// What a request says; every field is required for `new`, and each one
/// given to `revise` replaces that field of the latest revision.
#[derive(Debug, Clone, clap::Args)]
pub struct RequestFields {
    /// Target(s) of one system; repeat or separate with commas.
    #[arg(long = "target", value_delimiter = ',')]
    targets: Vec<String>,
    /// ssh and/or rdp; repeat or separate with commas.
    #[arg(long = "protocol", value_delimiter = ',')]
    protocols: Vec<Protocol>,
    /// The engineer(s) who will work; repeat or separate with commas.
    #[arg(long = "engineer", value_delimiter = ',')]
    engineers: Vec<String>,
    /// Window start: "YYYY-MM-DD HH:MM" in the configured time zone, or RFC 3339.
    #[arg(long)]
    from: Option<String>,
    /// Window end (same forms as --from).
    #[arg(long)]
    until: Option<String>,
    /// 目的: why the work is needed.
    #[arg(long)]
    purpose: Option<String>,
    /// 作業内容: what will be done.
    #[arg(long)]
    work: Option<String>,
    /// The vendor (default: the requester's own).
    #[arg(long)]
    vendor: Option<String>,
    /// An emergency (緊急): one approval step opens it; marked in every report.
    #[arg(long)]
    emergency: bool,
}

/// The acting person.
#[derive(Debug, Clone, clap::Args)]
pub struct As {
    /// The sekisho user acting (see `sekisho request --help`).
    #[arg(long = "as", env = "SEKISHO_AS", value_name = "USER")]
    user: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum RequestCmd {
    /// File a new request as a draft (add --submit to submit it at once).
    New {
        #[command(flatten)]
        who: As,
        #[command(flatten)]
        fields: RequestFields,
        #[arg(long)]
        submit: bool,
    },
    /// Write a new revision of a request (a submitted one is never edited);
    /// fields not given are kept from the latest revision.
    Revise {
        number: String,
        #[command(flatten)]
        who: As,
        #[command(flatten)]
        fields: RequestFields,
        /// Clear the emergency mark.
        #[arg(long, conflicts_with = "emergency")]
        normal: bool,
        #[arg(long)]
        submit: bool,
    },
    /// List requests (the latest revision of each).
    List {
        /// Only in these states (repeat or separate with commas).
        #[arg(long = "state", value_delimiter = ',', value_parser = parse_state)]
        states: Vec<RequestState>,
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        system: Option<String>,
        /// Only requests naming this engineer.
        #[arg(long)]
        engineer: Option<String>,
        /// Requests waiting for a step this user may approve.
        #[arg(long, value_name = "USER")]
        waiting_for: Option<String>,
        /// Every revision, not only the latest.
        #[arg(long)]
        all_revisions: bool,
    },
    /// Show one request: fields, state, approvals, sessions under it.
    Show {
        number: String,
        #[arg(long)]
        revision: Option<u32>,
    },
    /// Submit the draft for approval.
    Submit {
        number: String,
        #[command(flatten)]
        who: As,
    },
    /// Approve the next step (the route is the system's [approval]).
    Approve {
        number: String,
        #[command(flatten)]
        who: As,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject a submitted request.
    Reject {
        number: String,
        #[command(flatten)]
        who: As,
        #[arg(long)]
        reason: String,
    },
    /// Withdraw your own request (draft, submitted or approved).
    Withdraw {
        number: String,
        #[command(flatten)]
        who: As,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revoke a request at once: its live sessions end, showing the reason.
    Revoke {
        number: String,
        #[command(flatten)]
        who: As,
        #[arg(long)]
        reason: String,
    },
    /// An engineer's own one-time ticket for a target of their approved
    /// request (valid while its window is open, never past its end); with
    /// --rdp-file, also a Remote Desktop Connection file for it.
    Ticket {
        number: String,
        #[command(flatten)]
        who: As,
        #[arg(long)]
        target: String,
        /// rdp (the default: mstsc's credential prompt cannot ask for a code) or ssh.
        #[arg(long, default_value = "rdp")]
        protocol: Protocol,
        /// Write an .rdp file for mstsc here (rdp only).
        #[arg(long, value_name = "FILE")]
        rdp_file: Option<std::path::PathBuf>,
        /// The bastion's address as engineers reach it, for the .rdp file
        /// (default: the RDP listen address).
        #[arg(long)]
        bastion: Option<String>,
    },
    /// Close an active request: the work is over.
    Close {
        number: String,
        #[command(flatten)]
        who: As,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn parse_state(s: &str) -> Result<RequestState, String> {
    s.parse()
}

pub async fn run(g: &Global, cmd: RequestCmd) -> anyhow::Result<ExitCode> {
    let (cfg, store) = open(g).await?;
    let now = Utc::now();
    // Windows that ended are closed before anything is shown or decided.
    procedure::expire_due(&store, now)
        .await
        .context("expiring work requests whose window ended")?;
    match cmd {
        RequestCmd::New {
            who,
            fields,
            submit,
        } => {
            let policies = policies(&cfg)?;
            let acting = acting(&store, &who).await?;
            let draft = draft(&cfg, fields, None, false)?;
            let r = procedure::file(&store, &policies, &acting, draft, now).await?;
            println!("{}", r.number);
            let r = if submit {
                procedure::submit(&store, &policies, &acting, &r.number, now).await?
            } else {
                r
            };
            print_request(&cfg, &store, &policies, &r).await?;
        }
        RequestCmd::Revise {
            number,
            who,
            fields,
            normal,
            submit,
        } => {
            let policies = policies(&cfg)?;
            let acting = acting(&store, &who).await?;
            let latest = store.require_work_request(&number, None).await?;
            let draft = draft(&cfg, fields, Some(&latest), normal)?;
            let r = procedure::revise(&store, &policies, &acting, &number, draft, now).await?;
            let r = if submit {
                procedure::submit(&store, &policies, &acting, &r.number, now).await?
            } else {
                r
            };
            print_request(&cfg, &store, &policies, &r).await?;
        }
        RequestCmd::List {
            states,
            vendor,
            system,
            engineer,
            waiting_for,
            all_revisions,
        } => {
            let policies = policies(&cfg)?;
            let mut list = store
                .work_requests(&WorkRequestFilter {
                    states,
                    vendor,
                    system,
                    engineer,
                    all_revisions,
                    ..WorkRequestFilter::default()
                })
                .await?;
            if let Some(name) = waiting_for {
                let user = procedure::acting_user(&store, &name).await?;
                let actor = procedure::actor_of(&user);
                list.retain(|r| {
                    r.state == RequestState::Submitted
                        && policies.system(&r.system).is_some_and(|s| {
                            let route = s.route();
                            let next = r.approvals.len();
                            procedure::state::may_approve_step(&route, next, &actor)
                                || (r.urgency == Urgency::Emergency
                                    && (0..route.steps.len()).any(|st| {
                                        procedure::state::may_approve_step(&route, st, &actor)
                                    }))
                        })
                        && r.requester != name
                        && !r.engineers.contains(&name)
                        && !r.approvals.iter().any(|a| a.by == name)
                });
            }
            if list.is_empty() {
                println!("no work requests");
            } else {
                println!(
                    "{:<13} {:>3}  {:<9}  {:<9}  {:<10}  {:<16}  {:<16}  {:<20}  PURPOSE",
                    "NUMBER", "REV", "STATE", "URGENCY", "VENDOR", "FROM", "UNTIL", "TARGETS"
                );
                let tz = cfg.time_zone;
                let short = |t: chrono::DateTime<Utc>| {
                    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
                };
                for r in &list {
                    println!(
                        "{:<13} {:>3}  {:<9}  {:<9}  {:<10}  {:<16}  {:<16}  {:<20}  {}",
                        r.number,
                        r.revision,
                        r.state.as_str(),
                        r.urgency.as_str(),
                        r.vendor,
                        short(r.window_start),
                        short(r.window_end),
                        r.targets.join(","),
                        r.purpose
                    );
                }
            }
        }
        RequestCmd::Show { number, revision } => {
            let policies = policies(&cfg)?;
            let r = store.require_work_request(&number, revision).await?;
            print_request(&cfg, &store, &policies, &r).await?;
        }
        RequestCmd::Submit { number, who } => {
            let policies = policies(&cfg)?;
            let acting = acting(&store, &who).await?;
            let r = procedure::submit(&store, &policies, &acting, &number, now).await?;
            println!("{} submitted", r.label());
        }
        RequestCmd::Approve {
            number,
            who,
            comment,
        } => {
            let policies = policies(&cfg)?;
            let acting = acting(&store, &who).await?;
            let r = procedure::approve(
                &store,
                &policies,
                &acting,
                &number,
                &comment,
                cfg.time_zone,
                now,
            )
            .await?;
            let steps = policies
                .system(&r.system)
                .map(|s| s.route().steps.len())
                .unwrap_or(1);
            if r.state == RequestState::Approved {
                let from = r.approved_from.unwrap_or(r.window_start);
                println!(
                    "{} approved{}: open {} to {}",
                    r.label(),
                    if r.urgency == Urgency::Emergency {
                        " (EMERGENCY)"
                    } else {
                        ""
                    },
                    local_time(&cfg, from),
                    local_time(&cfg, r.window_end)
                );
                if from > r.window_start {
                    println!("approved after the window started: only the rest of it is open");
                }
            } else {
                println!(
                    "{}: step {} of {steps} approved; waiting for step {}",
                    r.label(),
                    r.approvals.len(),
                    r.approvals.len() + 1
                );
            }
        }
        RequestCmd::Reject {
            number,
            who,
            reason,
        } => {
            let r = plain(&cfg, &store, &who, &number, Action::Reject, &reason, now).await?;
            println!("{} rejected", r.label());
        }
        RequestCmd::Withdraw {
            number,
            who,
            reason,
        } => {
            let r = plain(&cfg, &store, &who, &number, Action::Withdraw, &reason, now).await?;
            println!("{} withdrawn", r.label());
        }
        RequestCmd::Close {
            number,
            who,
            reason,
        } => {
            let r = plain(&cfg, &store, &who, &number, Action::Close, &reason, now).await?;
            println!("{} closed", r.label());
        }
        RequestCmd::Ticket {
            number,
            who,
            target,
            protocol,
            rdp_file,
            bastion,
        } => {
            if rdp_file.is_some() && protocol != Protocol::Rdp {
                anyhow::bail!("--rdp-file is for --protocol rdp");
            }
            // Where the .rdp file points, checked before a ticket is issued.
            let listen = cfg.rdp.listen;
            let host = match bastion {
                Some(h) => h,
                None if rdp_file.is_some() && listen.ip().is_unspecified() => anyhow::bail!(
                    "[rdp] listen is {listen}: name the bastion as engineers reach it with --bastion HOST"
                ),
                None => listen.ip().to_string(),
            };
            let policies = policies(&cfg)?;
            let acting = acting(&store, &who).await?;
            let key = crate::auth::secrets::load_master_key(&cfg.paths.master_key())
                .context("loading the master key (written by `sekisho init`)")?;
            let t = procedure::ticket::issue_own(
                &store,
                &policies,
                &key,
                cfg.auth.ticket_lifetime,
                &acting,
                &number,
                &target,
                protocol,
                now,
            )
            .await?;
            // The ticket alone on the first line, for scripts.
            println!("{}", t.text.as_str());
            println!(
                "single use, for {} to {target} over {protocol} under {number}, until {}",
                acting.user.name,
                local_time(&cfg, t.expires_at)
            );
            if let Some(path) = rdp_file {
                let text =
                    procedure::ticket::rdp_file(&host, listen.port(), &acting.user.name, &target);
                super::report::write_whole(&path, text.as_bytes())?;
                println!(
                    "wrote {}: open it, and type the ticket as the password when asked",
                    path.display()
                );
            }
        }
        RequestCmd::Revoke {
            number,
            who,
            reason,
        } => {
            let policies = policies(&cfg)?;
            let acting = acting(&store, &who).await?;
            let (r, stopped) =
                procedure::revoke(&store, &policies, &acting, &number, &reason, now).await?;
            println!("{} revoked", r.label());
            for id in &stopped {
                println!("asked to stop live session {id}");
            }
            // The serving processes poll for stops several times a second:
            // confirm, as `sessions kill` does.
            let mut left = stopped.clone();
            let mut wait = crate::session::ConfirmEnd::start();
            while !left.is_empty() && wait.next_look().await {
                let mut still = Vec::new();
                for id in left {
                    match store.session(id).await? {
                        Some(s) if s.status == crate::store::SessionStatus::Live => still.push(id),
                        _ => println!("session {id} ended"),
                    }
                }
                left = still;
            }
            if !left.is_empty() {
                println!(
                    "{} session(s) have not ended yet (is their `sekisho serve` running?)",
                    left.len()
                );
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn plain(
    cfg: &Config,
    store: &Store,
    who: &As,
    number: &str,
    action: Action,
    reason: &str,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<WorkRequest> {
    let policies = policies(cfg)?;
    let acting = acting(store, who).await?;
    Ok(procedure::act(store, &policies, &acting, number, action, reason, now).await?)
}

pub(super) async fn acting(store: &Store, who: &As) -> anyhow::Result<Acting> {
    let user = procedure::acting_user(store, &who.user).await?;
    Ok(Acting {
        user,
        via: format!("cli (os user {})", crate::auth::admin_actor()),
    })
}

pub(super) fn policies(cfg: &Config) -> anyhow::Result<PolicySet> {
    PolicySet::load_dir(&cfg.paths.policies, &cfg.networks, None).map_err(|e| {
        anyhow::anyhow!(
            "the policies in {} have errors (run `sekisho policy check`):\n{e}",
            cfg.paths.policies.display()
        )
    })
}

/// The draft from the flags; for a revision, the latest revision fills
/// what is not given.
fn draft(
    cfg: &Config,
    f: RequestFields,
    base: Option<&WorkRequest>,
    normal: bool,
) -> anyhow::Result<Draft> {
    let tz = cfg.time_zone;
    let need = |what: &str| anyhow::anyhow!("--{what} is required");
    let pick = |given: Vec<String>, old: Option<&Vec<String>>, what: &str| {
        if !given.is_empty() {
            Ok(given)
        } else {
            old.cloned().ok_or_else(|| need(what))
        }
    };
    let window_start = match (&f.from, base) {
        (Some(s), _) => parse_time("--from", s, tz)?,
        (None, Some(b)) => b.window_start,
        (None, None) => return Err(need("from")),
    };
    let window_end = match (&f.until, base) {
        (Some(s), _) => parse_time("--until", s, tz)?,
        (None, Some(b)) => b.window_end,
        (None, None) => return Err(need("until")),
    };
    let protocols = if !f.protocols.is_empty() {
        f.protocols
    } else {
        base.map(|b| b.protocols.clone())
            .ok_or_else(|| need("protocol"))?
    };
    let urgency = if f.emergency {
        Urgency::Emergency
    } else if normal {
        Urgency::Normal
    } else {
        base.map(|b| b.urgency).unwrap_or(Urgency::Normal)
    };
    Ok(Draft {
        vendor: f.vendor.or_else(|| base.map(|b| b.vendor.clone())),
        engineers: pick(f.engineers, base.map(|b| &b.engineers), "engineer")?,
        targets: pick(f.targets, base.map(|b| &b.targets), "target")?,
        protocols,
        purpose: f
            .purpose
            .or_else(|| base.map(|b| b.purpose.clone()))
            .ok_or_else(|| need("purpose"))?,
        work: f
            .work
            .or_else(|| base.map(|b| b.work.clone()))
            .ok_or_else(|| need("work"))?,
        window_start,
        window_end,
        urgency,
    })
}

async fn print_request(
    cfg: &Config,
    store: &Store,
    policies: &PolicySet,
    r: &WorkRequest,
) -> anyhow::Result<()> {
    let t = |x| local_time(cfg, x);
    println!("work request {} (revision {})", r.number, r.revision);
    println!(
        "  state:      {} (since {}, by {}{})",
        r.state,
        t(r.state_at),
        r.state_by,
        if r.state_reason.is_empty() {
            String::new()
        } else {
            format!(": {}", r.state_reason)
        }
    );
    println!(
        "  urgency:    {}",
        if r.urgency == Urgency::Emergency {
            "EMERGENCY (緊急)"
        } else {
            "normal"
        }
    );
    println!("  system:     {}", r.system);
    println!("  vendor:     {}", r.vendor);
    println!("  requester:  {}", r.requester);
    println!("  engineers:  {}", r.engineers.join(", "));
    println!("  targets:    {}", r.targets.join(", "));
    println!(
        "  protocols:  {}",
        r.protocols
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  window:     {} to {}", t(r.window_start), t(r.window_end));
    if let Some(from) = r.approved_from
        && from > r.window_start
    {
        println!(
            "  open from:  {} (approved after the window started)",
            t(from)
        );
    }
    println!("  purpose:    {}", r.purpose);
    println!("  work:       {}", r.work);
    let route = policies
        .system(&r.system)
        .map(|s| (s.route(), s.requires_approval()));
    if let Some((route, required)) = route {
        println!(
            "  route:      {} step(s){}",
            route.steps.len(),
            if required {
                "; sessions need this approval"
            } else {
                "; approval not required for sessions"
            }
        );
        for (i, step) in route.steps.iter().enumerate() {
            let done = r
                .approvals
                .iter()
                .find(|a| a.step == i)
                .map(|a| {
                    let comment = if a.comment.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", a.comment)
                    };
                    format!("approved by {} at {}{comment}", a.by, t(a.at))
                })
                .unwrap_or_else(|| "waiting".into());
            println!("    step {}: {step} — {done}", i + 1);
        }
    }
    let live = store
        .live_sessions_of_request(&r.number)
        .await
        .context("reading live sessions")?;
    for s in live {
        println!(
            "  live:       session {} of {} on {} since {}",
            s.id,
            s.user,
            s.target,
            t(s.started_at)
        );
    }
    Ok(())
}
