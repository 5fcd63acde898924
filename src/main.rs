use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = sekisho::cli::Cli::parse();
    if !cli.command.handles_broken_pipes() {
        restore_default_sigpipe();
    }
    match sekisho::cli::run(cli).await {
        Ok(code) => code,
        // The reader of our output went away (`… | head -1`): what it read
        // was complete; say nothing more, as other Unix tools do.
        Err(e) if sekisho::cli::is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("sekisho: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The Rust runtime ignores SIGPIPE, so a write to a closed pipe becomes an
/// error and `println!` panics on it. For commands that only print, the
/// Unix default (end quietly when the reader is gone) is what a person expects.
#[allow(unsafe_code)] // FFI to libc; see SAFETY below.
fn restore_default_sigpipe() {
    // SAFETY: called first thing in main, before any other thread writes or
    // installs signal handlers; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
