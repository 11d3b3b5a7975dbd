//! `forecastin-origin`: serve the API (the default), grow the database with synthetic data, or
//! check that a running server is healthy.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use clap::{Parser, Subcommand};
use forecastin_origin::{
    background::Background,
    config::Config,
    db::Db,
    hierarchy::{ranks, Hierarchy},
    ops::telemetry,
    purge::Outbox,
    seed,
};

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
    /// Number every name for search again and rebuild the trigram index, dropping what large
    /// deletes left in it (a maintenance task: writes wait while it runs).
    Renumber,
    /// Ask the server for `/healthz` (on `ADMIN_ADDR` when set, else `LISTEN_ADDR`); fails
    /// unless it answers 200 (the container's HEALTHCHECK: the image has no shell and no curl).
    Healthcheck,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = telemetry::init(cli.config.log_format, cli.config.otlp_endpoint.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let served = forecastin_origin::serve(cli.config).await;
            telemetry.shutdown();
            served
        }
        Command::Generate { entities } => {
            let hierarchy = Hierarchy::new(
                Db::connect(&cli.config.db, Default::default(), &Background::default()).await?,
                Outbox::default(),
            );
            seed::load_demo_if_empty(&hierarchy).await?;
            let total = seed::generate(&hierarchy, entities).await?;
            println!("the database holds {total} entities");
            Ok(())
        }
        Command::Renumber => {
            let db =
                Db::connect(&cli.config.db, Default::default(), &Background::default()).await?;
            ranks::renumber(&db).await?;
            println!("numbered every name for search");
            Ok(())
        }
        Command::Healthcheck => {
            healthcheck(cli.config.admin_addr.unwrap_or(cli.config.listen_addr)).await
        }
    }
}

async fn healthcheck(mut addr: SocketAddr) -> anyhow::Result<()> {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{addr}/healthz");
    let response = forecastin_origin::http_client()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()?
        .get(&url)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == reqwest::StatusCode::OK,
        "{url} answered {}",
        response.status()
    );
    Ok(())
}
