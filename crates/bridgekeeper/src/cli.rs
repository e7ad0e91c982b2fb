//! The command line (the contract scripts and operators rely on; see DESIGN.md).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

#[derive(Parser, Debug)]
#[command(name = "bridgekeeper", version, about = "Multi-tenant OAuth 2.1 authorization server and MCP gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Default)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Public base URL (default http://{listen}).
        #[arg(long)]
        issuer: Option<String>,
        /// Data directory for the embedded database and generated keys (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { cfg, listen, issuer, data_dir } => {
            let config = Config::load(cfg.config.as_deref(), &Overrides { listen, issuer, data_dir })?;
            crate::serve::serve(config).await
        }
    }
}
