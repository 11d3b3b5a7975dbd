//! The Forecastin origin: the navigation hierarchy API with its caching contract.
//!
//! Layout: [`config`] (environment), [`db`] (pools, read replicas, migrations, retries),
//! [`hierarchy`] (the entity store, its SQL, the consistency checker), [`cache`] (the response
//! tiers L1 and L2, collapsed misses, predictive preloading), [`purge`] (the CDN purge outbox
//! and dispatcher), [`cluster`] (the Redis link, the bus, events and the registry that make
//! several instances one), [`flags`] (feature flags with gradual rollout), [`http`] (routes,
//! extractors, caching headers), [`seed`] (the ISO 3166 demo data and synthetic growth),
//! [`ops`] (metrics, readiness, logs and traces), [`clock`] and [`id`].

pub mod background;
pub mod cache;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod db;
pub mod error;
pub mod flags;
pub mod hierarchy;
pub mod http;
pub mod id;
pub mod ops;
pub mod purge;
pub mod seed;

use std::{num::NonZeroUsize, sync::Arc};

use anyhow::Context;
use axum::{http::HeaderValue, Router};

use crate::{
    background::{Background, Lifetime},
    cache::{hot::HotKeys, l1::L1, l2::L2, warm::Warmer},
    cluster::{bus::Bus, events::Events, link::RedisLink, registry::Registry, Cluster},
    config::Config,
    db::{replicas::WriteHorizon, Db},
    flags::Flags,
    hierarchy::Hierarchy,
    http::{caching::Caching, Access, AppState, Ops, Streams},
    ops::{metrics, readiness::Readiness},
    purge::{
        dispatcher::{self, Dispatcher},
        providers::Provider,
        tiers::Tiers,
        Outbox, PurgeLog,
    },
};

/// An HTTP client builder whose TLS uses `ring`: reqwest is built without its default crypto
/// provider (aws-lc, a C library it would compile), and rustls needs one chosen per process.
pub fn http_client() -> reqwest::ClientBuilder {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// Connects to the database, loads the demo data if asked and the database is empty, and
/// builds the application.
pub async fn build(config: &Config) -> anyhow::Result<(Router, Arc<AppState>)> {
    config.check_secrets()?;
    let metrics = metrics::handle();
    // Every loop started from here on stops when this is dropped: on an error below, or with
    // the application's state.
    let lifetime = Lifetime::new(Background::default());
    let background = &lifetime.background;
    let horizon = WriteHorizon::default();
    let db = Db::connect(&config.db, horizon.clone(), background).await?;
    let providers = Provider::from_config(&config.purge)?;
    let l1 = NonZeroUsize::new(config.cache.l1_capacity)
        .map(|capacity| Arc::new(L1::new(capacity, config.cache.l1_max_bytes)));
    let instance_id = config
        .cluster
        .instance_id
        .clone()
        .unwrap_or_else(|| id::random_hex()[..12].to_owned());
    let advertised = config
        .cluster
        .advertise_addr
        .clone()
        .unwrap_or_else(|| config.listen_addr.to_string());
    let cluster = &config.cluster;
    let disconnected_ttl = std::time::Duration::from_millis(cluster.l1_disconnected_ttl_ms);
    let redis: Option<RedisLink> = match &cluster.redis_url {
        Some(url) => Some(
            RedisLink::connect(url, &cluster.redis_namespace)
                .await
                .context("connecting to REDIS_URL")?,
        ),
        None => None,
    };
    // L2 is cleared by every instance with Redis, and read by those with an L2 TTL.
    let (bus, events, l2) = match &redis {
        Some(link) => {
            let limits = cache::l2::Limits {
                ttl: std::time::Duration::from_secs(cluster.l2_ttl_secs),
                max_tag_members: cluster.l2_max_tag_members,
            };
            let l2 = Arc::new(L2::new(link, horizon.clone(), limits));
            let bus = Bus::redis(link.clone(), instance_id, disconnected_ttl, horizon);
            let events = Events::redis(link.clone());
            (bus, events, Some((l2, !limits.ttl.is_zero())))
        }
        None => (
            Bus::in_process(instance_id, disconnected_ttl),
            Events::default(),
            None,
        ),
    };
    let registry = Arc::new(Registry::new(
        bus.instance_id().to_owned(),
        advertised,
        redis.clone(),
        l1.clone(),
        std::time::Duration::from_millis(cluster.heartbeat_ms),
    ));
    registry.spawn_heartbeat(background);
    bus.spawn_subscriber(l1.clone(), events.clone(), background);
    bus.spawn_sequence_check(l1.clone(), background);
    let flags = Flags::load(db.clone(), bus.instance_id(), config.flag_rollout_start)
        .await
        .context("loading the feature flags")?;
    flags.spawn_reload(background);
    let warmer = Arc::new(Warmer::new(Arc::new(HotKeys::default()), flags.clone()));
    let tiers = Tiers {
        db: db.clone(),
        l1: l1.clone(),
        l2: l2.as_ref().map(|(l2, _)| l2.clone()),
        bus: bus.clone(),
        registry: registry.clone(),
        events: events.clone(),
        warmer: warmer.clone(),
    };
    let outbox = Outbox::new(
        providers.iter().map(Provider::name).collect(),
        tiers.clone(),
        flags.clone(),
    );
    tiers.clone().spawn_sweeper(outbox.waker(), background);
    if providers.is_empty() {
        tracing::warn!(
            "no purge provider is configured: data changes purge only the origin's own tiers"
        );
    }
    let hierarchy = Hierarchy::new(db.clone(), outbox.clone());
    if config.seed_demo_data {
        seed::load_demo_if_empty(&hierarchy).await?;
    }
    if hierarchy::ranks::heal(&db).await? {
        tracing::info!("numbered the names for search");
    }
    // Reads start no older than the primary is now (the demo data just loaded, say): a replica
    // serves them only once it has replayed that far.
    db.note_write().await;
    let admin_token = match &config.admin_token {
        Some(token) if !token.is_empty() => token.clone(),
        _ => {
            let token = id::random_hex();
            tracing::warn!("ADMIN_TOKEN is not set; this run's admin token is {token}");
            token
        }
    };
    dispatcher::spawn(
        Dispatcher::new(
            db.clone(),
            providers,
            outbox.waker(),
            Some(tiers),
            config.purge.timeout(),
            config.purge.retry_max_ms,
        ),
        background,
        lifetime.departing.clone(),
    );
    let readiness = Readiness::start(db.clone(), background).await;
    let state = Arc::new(AppState {
        purges: PurgeLog { db },
        hierarchy,
        cache: Caching {
            l1,
            l2: l2.and_then(|(l2, read)| read.then_some(l2)),
            flights: Default::default(),
            warmer: warmer.clone(),
            control: HeaderValue::try_from(config.cache.cache_control())
                .context("building Cache-Control")?,
            max_body: config.cache.max_body_bytes,
        },
        cluster: Cluster {
            bus,
            events,
            registry: registry.clone(),
        },
        flags,
        access: Access {
            admin_token,
            edge_auth: config.edge_credentials().map(str::to_owned).collect(),
        },
        streams: Streams::new(&config.cluster),
        ops: Ops { readiness, metrics },
        lifetime,
    });
    let (admin_apart, timeout) = (config.admin_addr.is_some(), config.request_timeout());
    let app = http::router(state.clone(), admin_apart, timeout);
    let weak = Arc::downgrade(&state);
    warmer.attach(move || {
        let state = weak.upgrade()?;
        Some(http::router(state, admin_apart, timeout))
    });
    if let Some(link) = &redis {
        warmer
            .hot
            .spawn_sharing(link.clone(), registry.clone(), &state.lifetime.background);
        let (pages, took) = warmer.warm_start(link, &registry).await;
        ::metrics::gauge!(metrics::WARM_START_PAGES).set(pages as f64);
        ::metrics::gauge!(metrics::WARM_START_SECONDS).set(took.as_secs_f64());
        if pages > 0 {
            tracing::info!(pages, ?took, "warmed up with the cluster's hot pages");
        }
    }
    Ok((app, state))
}

/// What an instance does when told to stop, before it finishes the requests in flight: it
/// leaves the registry and withdraws its acknowledgement, so purges stop waiting for it; it
/// stops trusting its L1, as the load balancer may still send it requests for a while; and it
/// closes its websocket streams with 1001, so their clients resume on another instance at once;
/// its purge dispatcher finishes the round under way and starts no other.
pub async fn depart(state: &AppState) {
    state.lifetime.departing.cancel();
    state.cluster.bus.depart().await;
    state.cluster.registry.depart().await;
    tracing::info!("departed: left the registry and closed the event streams");
}

/// Longest an instance that stops waits, once its requests are served, for the purge
/// dispatcher's round under way and then its other loops (within Kubernetes' 30 s grace
/// period).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Serves until Ctrl-C or SIGTERM, then departs ([`depart`]: the dispatcher starts no new
/// round), finishes the requests in flight and the dispatcher's round under way, and stops its
/// background loops.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let (app, state) = build(&config).await?;
    let listener = listen(&config).with_context(|| format!("binding {}", config.listen_addr))?;
    tracing::info!("origin listening on http://{}", listener.local_addr()?);
    if config.admin_addr.is_none() && !state.access.edge_auth.is_empty() {
        tracing::warn!(
            "EDGE_AUTH is set but ADMIN_ADDR is not: the admin API, /metrics and the probes \
             answer on the public listener (bearer token only); give them ADMIN_ADDR"
        );
    }
    if let Some(addr) = config.admin_addr {
        let admin = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding ADMIN_ADDR {addr}"))?;
        tracing::info!("admin API, metrics and probes on http://{addr}");
        let router = http::admin_router(state.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(admin, router).await {
                tracing::error!(%err, "the admin listener stopped");
            }
        });
    }
    // Peers' addresses, for the websocket limit per address.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown({
        let state = state.clone();
        async move {
            shutdown_signal().await;
            depart(&state).await;
        }
    })
    .await?;
    if !state.lifetime.background.stop(DRAIN_TIMEOUT).await {
        tracing::warn!(
            "the purge dispatcher did not finish its round; its claims lapse by themselves"
        );
    }
    Ok(())
}

/// The listening socket; `TCP_SEND_BUFFER_BYTES` caps the kernel's send buffer of every
/// connection (accepted sockets inherit it), which bounds memory per client and lets a
/// websocket client that stops reading be detected as slow.
fn listen(config: &Config) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if config.listen_addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if let Some(bytes) = config.tcp_send_buffer_bytes {
        socket.set_send_buffer_size(bytes)?;
    }
    socket.bind(config.listen_addr)?;
    socket.listen(1024)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
