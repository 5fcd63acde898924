//! Which SSH requests are file transfer or forwarding, and so refused.
//!
//! Pure functions, no I/O: the front asks, then refuses, audits and explains.
//!
//! Blocking `exec` by its command line is a blunt instrument. It catches what
//! real file-transfer clients send (`scp -t`/`scp -f`, `rsync --server`,
//! `sftp -s /usr/lib/openssh/sftp-server`) and the plain wrappers around them
//! (`env`, `sudo`, `sh -c '…'`, `a; scp …`), but a determined person can
//! always hide a program name from a string match. The real guarantee is the
//! recording: every byte of an exec's output is archived. A shell session can
//! also show a file on the screen (`cat file`) — that is screen transfer,
//! which the rules allow, and it is recorded like everything else.

/// Programs that move files over an SSH exec channel.
const FILE_TRANSFER_PROGRAMS: &[&str] = &[
    "scp",
    "sftp",
    "sftp-server",
    "internal-sftp",
    "sz",
    "rz",
    "sx",
    "rx",
    "sb",
    "rb",
    "lsz",
    "lrz",
];

/// Commands that run the rest of their arguments as another command.
const WRAPPERS: &[&str] = &[
    "env", "sudo", "doas", "exec", "nohup", "nice", "command", "time", "timeout", "stdbuf",
    "ionice", "setsid", "chrt", "taskset", "xargs", "builtin",
];

/// Shells whose `-c STRING` argument is itself a command line.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox"];

/// Environment variables passed through to the target (`SendEnv`); the rest
/// are dropped silently, as OpenSSH's sshd does with `AcceptEnv`.
pub fn env_allowed(name: &str) -> bool {
    matches!(name, "LANG" | "LANGUAGE" | "TZ" | "COLORTERM") || name.starts_with("LC_")
}

/// If `command` runs a file-transfer program, the program's name.
pub fn file_transfer_in_exec(command: &str) -> Option<&'static str> {
    classify(command, 0)
}

fn classify(command: &str, depth: u32) -> Option<&'static str> {
    // Nesting beyond this is not something a transfer client sends; refuse
    // rather than guess.
    if depth > 8 {
        return Some("deeply nested shell command");
    }
    for words in split_commands(command) {
        if let Some(found) = classify_simple(&words, depth) {
            return Some(found);
        }
    }
    None
}

/// One simple command (words already unquoted).
fn classify_simple(words: &[String], depth: u32) -> Option<&'static str> {
    if depth > 8 {
        return Some("deeply nested shell command");
    }
    let mut i = 0;
    // Skip assignments and wrappers (with their options) to find the program.
    while let Some(word) = words.get(i) {
        if is_assignment(word) || word.starts_with('-') {
            i += 1;
            continue;
        }
        let name = basename(word);
        if WRAPPERS.contains(&name) {
            // The wrapped program is one of the next few words that are not
            // options; an option's value may come first (`sudo -u root scp`,
            // `timeout 10 scp`), so each is tried as the program. Blunt: a
            // transfer program's name there is refused even as an argument
            // (`sudo grep scp file`), which errs on the side of refusing.
            let rest = words.get(i + 1..).unwrap_or(&[]);
            return rest
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.starts_with('-'))
                .take(4)
                .find_map(|(k, _)| classify_simple(rest.get(k..).unwrap_or(&[]), depth + 1));
        }
        if name == "eval" {
            let rest = words.get(i + 1..).unwrap_or(&[]).join(" ");
            return classify(&rest, depth + 1);
        }
        if SHELLS.contains(&name) {
            let args = words.get(i + 1..).unwrap_or(&[]);
            // busybox sh -c …, busybox scp …
            if name == "busybox"
                && let Some(applet) = args.first()
                && !SHELLS.contains(&basename(applet))
            {
                return classify_simple(args, depth);
            }
            let mut k = 0;
            while let Some(a) = args.get(k) {
                if a.starts_with('-') && !a.starts_with("--") && a.contains('c') {
                    return args
                        .get(k + 1)
                        .and_then(|script| classify(script, depth + 1));
                }
                k += 1;
            }
            return None;
        }
        if FILE_TRANSFER_PROGRAMS.contains(&name) {
            return FILE_TRANSFER_PROGRAMS.iter().copied().find(|p| *p == name);
        }
        if name == "rsync" && words.iter().any(|w| w == "--server") {
            return Some("rsync --server");
        }
        return None;
    }
    None
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Splits a shell command line into simple commands of unquoted words.
/// Operators (`; & | ( ) newline`, backquote, `$(`) end a command; quotes
/// and backslashes are removed the way the shell would.
fn split_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next()
                    && n != '\n'
                {
                    word.push(n);
                }
            }
            ';' | '&' | '|' | '(' | ')' | '\n' | '`' | '{' | '}' => {
                end_word(&mut words, &mut word, &mut in_word);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                end_word(&mut words, &mut word, &mut in_word);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => end_word(&mut words, &mut word, &mut in_word),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_transfer_commands_are_found() {
        let refused = [
            ("scp -t /tmp/x", "scp"),
            ("scp -f /etc/passwd", "scp"),
            ("/usr/bin/scp -t x", "scp"),
            ("scp -v -r -f x", "scp"),
            ("sh -c 'scp -f x'", "scp"),
            ("bash -lc \"scp -f x\"", "scp"),
            ("/bin/sh -c 'cd /tmp && scp -t .'", "scp"),
            (
                "rsync --server --sender -vlogDtpre.iLsfxC . /etc",
                "rsync --server",
            ),
            ("/usr/bin/rsync --server -e.LsfxC . /tmp", "rsync --server"),
            ("sftp-server", "sftp-server"),
            ("/usr/lib/openssh/sftp-server", "sftp-server"),
            ("/usr/lib/openssh/sftp-server -l INFO", "sftp-server"),
            ("internal-sftp", "internal-sftp"),
            ("env X=1 scp -f x", "scp"),
            ("env -i X=1 Y=2 /usr/bin/scp -f x", "scp"),
            ("X=1 scp -t x", "scp"),
            ("sudo scp -f /root/x", "scp"),
            ("sudo -u root scp -f /root/x", "scp"),
            ("sudo -i scp -f /root/x", "scp"),
            ("sudo -E env A=1 nohup scp -f x", "scp"),
            ("nice -n 5 scp -f x", "scp"),
            ("timeout 10 scp -f x", "scp"),
            ("echo hi; scp -f x", "scp"),
            ("true && scp -f x", "scp"),
            ("false || scp -f x", "scp"),
            ("cat x | scp -t y", "scp"),
            ("(scp -f x)", "scp"),
            ("echo $(scp -f x)", "scp"),
            ("echo `scp -f x`", "scp"),
            ("exec scp -f x", "scp"),
            ("eval scp -f x", "scp"),
            ("s\\cp -f x", "scp"),
            ("'scp' -f x", "scp"),
            ("busybox scp -f x", "scp"),
            ("sz file", "sz"),
            ("rz", "rz"),
            ("sftp user@host", "sftp"),
            ("sh -c \"sh -c 'scp -f x'\"", "scp"),
        ];
        for (cmd, what) in refused {
            assert_eq!(file_transfer_in_exec(cmd), Some(what), "{cmd:?}");
        }
    }

    #[test]
    fn ordinary_commands_pass() {
        let allowed = [
            "uptime",
            "exit 3",
            "ls -l /etc",
            "cat /var/log/syslog",
            "echo scp",
            "man scp",
            "grep -r scp /etc/ssh",
            "rsync --version",
            "rsync -a /a /b",
            "sh -c 'echo hello'",
            "bash",
            "sh -c",
            "systemctl status sshd",
            "head -c 1000 /dev/zero",
            "",
            "env",
            "sudo -l",
        ];
        for cmd in allowed {
            assert_eq!(file_transfer_in_exec(cmd), None, "{cmd:?}");
        }
    }

    #[test]
    fn very_deep_nesting_is_refused() {
        let mut cmd = String::from("true");
        for _ in 0..12 {
            cmd = format!("sh -c {}", shell_quote(&cmd));
        }
        assert!(file_transfer_in_exec(&cmd).is_some());
    }

    fn shell_quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "'\\''"))
    }

    #[test]
    fn environment_allow_list() {
        assert!(env_allowed("LANG"));
        assert!(env_allowed("LC_ALL"));
        assert!(env_allowed("TZ"));
        assert!(!env_allowed("LD_PRELOAD"));
        assert!(!env_allowed("PATH"));
        assert!(!env_allowed("BASH_ENV"));
        assert!(!env_allowed("SSH_AUTH_SOCK"));
    }

    #[test]
    fn splitting_respects_quotes() {
        assert_eq!(
            split_commands("a 'b c' \"d;e\" f\\ g; h"),
            vec![
                vec!["a".to_string(), "b c".into(), "d;e".into(), "f g".into()],
                vec!["h".to_string()]
            ]
        );
    }
}
