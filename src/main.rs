//! `clew`: the binary. It parses configuration, builds the parts and wires them; the
//! libraries (`clew-collector`, `clew-store`, `clew-query`) do the work.

mod agent;
mod config;
mod serve;

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

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(&args.log);
            let config = config::Config::load(&args.overrides)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("clew")
                .build()?;
            runtime.block_on(serve::serve(config))
        }
        Command::Agent(args) => agent::main(&args.overrides, args.print_config, &args.log),
        Command::Config(args) => {
            let config = config::Config::load(&args.overrides)?;
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
