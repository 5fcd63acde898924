use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = sekisho::cli::Cli::parse();
    match sekisho::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sekisho: {e:#}");
            ExitCode::from(2)
        }
    }
}
