//! Command-line entry point: parses arguments and hands over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Manage API keys and API tokens as Kubernetes resources.
#[derive(Parser)]
#[command(name = "apikey-operator", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of ApiKey and ApiToken as YAML.
    Crds,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => match apikey_operator::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: could not render the CRDs as YAML: {err}");
                ExitCode::FAILURE
            }
        },
    }
}
