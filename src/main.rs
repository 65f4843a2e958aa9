//! `clew`: the binary. It parses configuration, builds the parts and wires them; the
//! libraries (`clew-collector`, `clew-store`, `clew-query`) do the work.

mod agent;
mod alloc;
mod auth;
mod config;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "clew",
    version,
    about = "Distributed-tracing collector and storage backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process: OTLP receivers, embedded store and index, query API.
    Serve(ServeArgs),
    /// Print the effective configuration (file + environment + flags) as TOML and exit.
    Config(ServeArgs),
    /// Run next to applications: OTLP in on localhost, Avro out to Kafka, disk spool while
    /// Kafka is unreachable, head sampling.
    Agent(AgentArgs),
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    #[command(flatten)]
    overrides: agent::AgentOverrides,
    /// Print the effective agent configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Log filter (tracing-subscriber `EnvFilter` syntax); `RUST_LOG` wins when set.
    #[arg(long, env = "CLEW_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    overrides: config::Overrides,
    /// Log filter (tracing-subscriber `EnvFilter` syntax); `RUST_LOG` wins when set.
    #[arg(long, env = "CLEW_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(&args.log);
            let config = config::Config::load(&args.overrides)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("clew")
                .build()?;
            runtime.block_on(serve::serve(config, args.overrides.config.clone()))
        }
        Command::Agent(args) => agent::main(&args.overrides, args.print_config, &args.log),
        Command::Config(args) => {
            let config = config::Config::load(&args.overrides)?;
            print!("{}", toml::to_string_pretty(&config)?);
            print!("\n{}", config.redaction.describe());
            print!("\n{}", config.describe_retention());
            Ok(())
        }
    }
}

/// The error and its causes on one line, each cause once: many errors already end with
/// their source's text (`failed to bind on …: {source}`), and printing the chain as well
/// would say the same thing twice.
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(std::io::stderr().is_terminal()))
        .init();
}

/// Colour codes only for a terminal: in a log file or a pipe they are noise. `NO_COLOR`
/// (any non-empty value, <https://no-color.org>) turns them off on a terminal too.
fn use_colour(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Like `clew_collector::Error::Listen`: the source in the text and as `source()`.
    #[derive(Debug)]
    struct Listen(std::io::Error);

    impl std::fmt::Display for Listen {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failed to bind on 127.0.0.1:4317: {}", self.0)
        }
    }

    impl std::error::Error for Listen {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let listen = anyhow::Error::new(Listen(io())).context("failed to start the collector");
        assert_eq!(
            error_chain(&listen),
            "failed to start the collector: failed to bind on 127.0.0.1:4317: address in use"
        );
        let plain = anyhow::Error::new(io()).context("failed to listen");
        assert_eq!(error_chain(&plain), "failed to listen: address in use");
    }

    #[test]
    fn no_colour_off_a_terminal() {
        assert!(!use_colour(false));
    }
}
