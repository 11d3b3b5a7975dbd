//! `forecastin-origin`: serve the API (the default), or grow the database with synthetic data.

use clap::{Parser, Subcommand};
use forecastin_origin::{config::Config, db::Db, hierarchy::Hierarchy, purge::Outbox, seed};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (what runs with no subcommand).
    Serve,
    /// Add synthetic actors and topics under the subdivisions until the database holds
    /// `--entities` entities in all (loads the demo data first if the database is empty).
    Generate {
        #[arg(long)]
        entities: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => forecastin_origin::serve(cli.config).await,
        Command::Generate { entities } => {
            let hierarchy = Hierarchy::new(
                Db::connect(&cli.config.db, Default::default()).await?,
                Outbox::default(),
            );
            seed::load_demo_if_empty(&hierarchy).await?;
            let total = seed::generate(&hierarchy, entities).await?;
            println!("the database holds {total} entities");
            Ok(())
        }
    }
}
