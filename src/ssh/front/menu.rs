//! The target menu: with no target in the user name, the person is shown
//! the targets they may reach now and picks one by number or name.

use super::*;

impl<C: SshControl> Connection<C> {
    /// The targets the person may reach now, one a line, and the first
    /// one's name (for an example).
    async fn reachable_list(&self) -> (String, Option<String>) {
        let targets = self
            .shared
            .control
            .reachable_targets(&self.person(), self.source)
            .await;
        let mut text = String::from("sekisho: targets you may reach now:\r\n");
        if targets.is_empty() {
            text.push_str("  (none)\r\n");
        }
        for (i, t) in targets.iter().enumerate() {
            let until = t.until.with_timezone(&self.shared.options.time_zone);
            text.push_str(&format!(
                "  {:>2}) {:<20} system {:<12} {} until {}\r\n",
                i + 1,
                t.name,
                t.system,
                t.protocol,
                until.format("%Y-%m-%d %H:%M")
            ));
        }
        (text, targets.first().map(|t| t.name.clone()))
    }

    /// The menu on a terminal: the list, then the question.
    pub(super) async fn menu_text(&self) -> String {
        let (list, first) = self.reachable_list().await;
        let mut text = format!("\r\n{list}");
        if first.is_some() {
            text.push_str("Choose a target (number or name, q to quit): ");
        }
        text
    }

    /// Without a terminal there is nobody to answer the menu: a command
    /// (`ssh person@bastion 'uptime'`) or `ssh -T` is told how to name the
    /// target, with the list, and the channel ends with status 1.
    pub(super) async fn no_target_text(&self, command: bool) -> String {
        let (list, first) = self.reachable_list().await;
        let example = format!(
            "{}@{}@bastion",
            self.person(),
            first.as_deref().unwrap_or("TARGET")
        );
        let why = if command {
            format!(
                "sekisho: a command needs a target: name it in the login name, e.g. ssh {example} 'COMMAND'\r\n"
            )
        } else {
            format!(
                "sekisho: the target menu needs a terminal: use ssh -t, or name the target in the login name, e.g. ssh {example}\r\n"
            )
        };
        // Standard error of a client without a terminal: plain line ends.
        format!("{why}{list}").replace("\r\n", "\n")
    }

    /// A keystroke at the menu: edit the line, or act on Enter.
    pub(super) async fn menu_input(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), FrontError> {
        for (i, &b) in data.iter().enumerate() {
            let Some(ChanState::Menu(line)) = self.channels.get_mut(&id).map(|c| &mut c.state)
            else {
                return Ok(());
            };
            match b {
                b'\r' | b'\n' => {
                    let choice = std::mem::take(line).trim().to_string();
                    let _ = session.data(id, Bytes::from_static(b"\r\n"));
                    self.menu_choose(id, &choice, session).await?;
                    // What was typed after Enter belongs to the new shell.
                    let rest = data.get(i + 1..).unwrap_or(&[]);
                    if let (Some(ChanState::Running(tx)), Some(live)) =
                        (self.channels.get(&id).map(|c| &c.state), self.live())
                        && !rest.is_empty()
                    {
                        let rest = Bytes::copy_from_slice(rest);
                        live.touch_input();
                        if live
                            .record(SessionEvent::Input {
                                channel: u32::from(id),
                                data: rest.clone(),
                            })
                            .await
                        {
                            let _ = tx.send(Input::Data(rest)).await;
                        }
                    }
                    if !matches!(
                        self.channels.get(&id).map(|c| &c.state),
                        Some(ChanState::Menu(_))
                    ) {
                        return Ok(());
                    }
                }
                0x7f | 0x08 if line.pop().is_some() => {
                    let _ = session.data(id, Bytes::from_static(b"\x08 \x08"));
                }
                0x03 | 0x04 => {
                    self.end_channel_with(id, "no target chosen", session);
                    return Ok(());
                }
                b if (0x20..0x7f).contains(&b) && line.len() < 128 => {
                    line.push(char::from(b));
                    let _ = session.data(id, Bytes::copy_from_slice(&[b]));
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn menu_choose(
        &mut self,
        id: ChannelId,
        choice: &str,
        session: &mut Session,
    ) -> Result<(), FrontError> {
        if choice.eq_ignore_ascii_case("q") {
            self.end_channel_with(id, "no target chosen", session);
            return Ok(());
        }
        let targets = self
            .shared
            .control
            .reachable_targets(&self.person(), self.source)
            .await;
        let picked = choice
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| targets.get(n))
            .or_else(|| targets.iter().find(|t| t.name == choice))
            .map(|t| t.name.clone());
        let Some(target) = picked else {
            let _ = session.data(
                id,
                Bytes::from(format!("sekisho: no target {choice:?}\r\n")),
            );
            let menu = self.menu_text().await;
            let _ = session.data(id, Bytes::from(menu));
            return Ok(());
        };
        if let Some(s) = self.signed_in.as_mut() {
            s.target = Some(target);
        }
        self.decide(session.handle()).await;
        if let Slot::Refused(reason) = &self.slot {
            let reason = reason.clone();
            let _ = session.extended_data(id, 1, Bytes::from(format!("sekisho: {reason}\r\n")));
            let _ = session.exit_status_request(id, 1);
            let _ = session.eof(id);
            let _ = session.close(id);
            return Ok(());
        }
        if let Some(live) = self.live() {
            live.add_channel(id);
        }
        let back = match self.open_back_channel().await {
            Ok(b) => b,
            Err(e) => {
                let _ = session.extended_data(id, 1, Bytes::from(format!("sekisho: {e}\r\n")));
                let _ = session.close(id);
                return Ok(());
            }
        };
        let pty = self.channels.get(&id).and_then(|c| c.pty.clone());
        if let Some(p) = pty {
            if let Some(live) = self.live() {
                live.record(SessionEvent::Pty {
                    channel: u32::from(id),
                    term: p.term.clone(),
                    cols: p.cols,
                    rows: p.rows,
                })
                .await;
            }
            let mut back = back;
            let ok = back
                .request_pty(true, &p.term, p.cols, p.rows, p.px, p.py, &p.modes)
                .await
                .is_ok()
                && wait_reply(&mut back).await;
            if let Some(live) = self.live() {
                live.record(SessionEvent::Shell {
                    channel: u32::from(id),
                })
                .await;
            }
            if ok && back.request_shell(true).await.is_ok() && wait_reply(&mut back).await {
                self.start_relay(id, back, session);
                return Ok(());
            }
        }
        let _ = session.extended_data(
            id,
            1,
            Bytes::from_static(b"sekisho: the target refused the shell\r\n"),
        );
        let _ = session.close(id);
        Ok(())
    }
}
