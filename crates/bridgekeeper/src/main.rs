//! The `bridgekeeper` binary: command line, configuration, wiring, startup and shutdown.
#![forbid(unsafe_code)]

mod cli;
mod config;
mod disk;
mod headers;
mod idp_config;
mod keys;
mod knowledge;
mod llm_keys;
mod logging;
mod metrics;
mod observe;
mod serve;

use clap::Parser;

/// mimalloc instead of glibc's malloc: request handling allocates on one thread and frees on another
/// (the audit writer, the database threads), where glibc spends a quarter of the CPU in its arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bridgekeeper: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridgekeeper: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
