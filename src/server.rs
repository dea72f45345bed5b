//! Runs the gRPC, HTTP and ops listeners in one process and stops them
//! together, losing nothing: first a drain (health says NOT_SERVING, HTTP
//! answers carry `Connection: close`, every request already sent is
//! answered), then the listeners stop, then the last `last_used_at` flush.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::{self, AdminState};
use crate::cache::{Redis, Tiers, invalidation};
use crate::check::Authorizer;
use crate::config::Settings;
use crate::grpc::{AuthorizationServer, ExtAuthz, GrpcOptions};
use crate::http::{HttpOptions, HttpState};
use crate::metrics::Metrics;
use crate::ops::OpsState;
use crate::policy_file::PolicyHandle;
use crate::shutdown::{Drain, stopped};
use crate::store::Store;
use crate::usage::{self, FlushStats};
use crate::{http, ops};

/// A running gatepass. Dropping it does not stop it; call [`Running::stop`].
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    /// The cache tiers every surface shares.
    pub tiers: Tiers,
    /// What the last-used flusher has written so far.
    pub usage_stats: watch::Receiver<FlushStats>,
    /// The route policy in force, when a file is configured.
    pub policy: Option<PolicyHandle>,
    stop_grpc: watch::Sender<bool>,
    http: ServerHandle,
    ops: ServerHandle,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    stop_background: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
    health: HealthReporter,
    drain: Drain,
}

/// Binds every listener (port 0 picks a free port) and starts serving.
/// Migrations are the caller's business.
pub async fn start(settings: &Settings, store: Store) -> anyhow::Result<Running> {
    let metrics = Metrics::new().context("cannot register metrics")?;
    let redis = settings
        .redis
        .clone()
        .map(|options| Redis::new(options, metrics.clone()))
        .transpose()
        .context("cannot set up Redis")?;
    let tiers = Tiers::new(store.clone(), redis, &settings.cache, metrics.clone());
    let (stop_background, background_stopped) = watch::channel(false);
    // Floors must outlive anything L2 could still hold.
    let floor_ttl = settings
        .redis
        .as_ref()
        .map_or(Duration::from_secs(60), |redis| {
            redis.ttl + Duration::from_secs(10)
        });
    let feed = tokio::spawn(invalidation::run(
        tiers.clone(),
        floor_ttl,
        background_stopped.clone(),
    ));
    let (stats, usage_stats) = watch::channel(FlushStats::default());
    let (usage, flusher) = usage::start(
        store.clone(),
        settings.last_used_flush_interval,
        settings.shutdown_timeout,
        background_stopped,
        stats,
        metrics.clone(),
    );
    let drain = Drain::default();
    let policy = settings
        .policy_file
        .as_deref()
        .map(PolicyHandle::open)
        .transpose()?;
    let mut background = vec![feed, flusher];
    if let Some(policy) = policy.clone() {
        background.push(tokio::spawn(policy.watch(stop_background.subscribe())));
    }
    let authorizer = Authorizer::new(
        tiers.clone(),
        Some(usage),
        settings.token_format.clone(),
        settings
            .token_max_age
            .map(chrono::Duration::from_std)
            .transpose()
            .context("token max age is too long")?,
    )
    .with_policy(policy.clone())
    .with_ability_matching(settings.ability_matching);

    let grpc_listener = TcpListener::bind(settings.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", settings.grpc_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_listener = std::net::TcpListener::bind(settings.http_addr)
        .with_context(|| format!("cannot listen for HTTP on {}", settings.http_addr))?;
    let http_addr = http_listener.local_addr()?;
    let ops_listener = std::net::TcpListener::bind(settings.ops_addr)
        .with_context(|| format!("cannot listen for ops on {}", settings.ops_addr))?;
    let ops_addr = ops_listener.local_addr()?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&health_reporter, true).await;
    background.push(tokio::spawn(report_store_health(
        store.clone(),
        health_reporter.clone(),
        stop_background.subscribe(),
    )));
    let ext_authz = ExtAuthz::new(
        authorizer.clone(),
        GrpcOptions {
            identity_headers: settings.identity_headers.clone(),
            remove_headers: settings.remove_headers.clone(),
            xff_trusted_hops: settings.grpc_xff_trusted_hops,
        },
        metrics.clone(),
        drain.clone(),
    );
    let (stop_grpc, mut grpc_stopped) = watch::channel(false);
    let grpc = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(ext_authz.into_server())
            .serve_with_incoming_shutdown(
                TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                async move {
                    let _ = grpc_stopped.wait_for(|stop| *stop).await;
                },
            )
            .await
            .context("gRPC server failed")
    });

    let admin_state = web::Data::new(AdminState {
        authorizer: authorizer.clone(),
        store: store.clone(),
        trusted_proxies: settings.trusted_proxies.clone(),
    });
    let http_state = web::Data::new(HttpState::new(
        authorizer,
        HttpOptions {
            identity_headers: settings.identity_headers.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            refresh_lifetimes: settings.refresh_lifetimes,
        },
        metrics.clone(),
    )?);
    let shutdown_secs = settings.shutdown_timeout.as_secs().max(1);
    let http_drain = drain.clone();
    let http_server = HttpServer::new(move || {
        App::new()
            .app_data(http_state.clone())
            .configure(http::routes)
            .wrap(http_drain.clone())
    })
    .workers(settings.http_workers)
    .disable_signals()
    .shutdown_timeout(shutdown_secs)
    .listen(http_listener)?
    .run();
    let http = http_server.handle();

    let ops_state = web::Data::new(OpsState {
        tiers: tiers.clone(),
        policy: policy.clone(),
    });
    let ops_drain = drain.clone();
    let ops_server = HttpServer::new(move || {
        App::new()
            .app_data(ops_state.clone())
            .app_data(admin_state.clone())
            .configure(ops::routes)
            .configure(admin::routes)
            .wrap(ops_drain.clone())
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(shutdown_secs)
    .listen(ops_listener)?
    .run();
    let ops = ops_server.handle();

    let tasks = vec![
        grpc,
        tokio::spawn(async move { http_server.await.context("HTTP server failed") }),
        tokio::spawn(async move { ops_server.await.context("ops server failed") }),
    ];
    Ok(Running {
        grpc_addr,
        http_addr,
        ops_addr,
        tiers,
        usage_stats,
        policy,
        stop_grpc,
        http,
        ops,
        tasks,
        stop_background,
        background,
        health: health_reporter,
        drain,
    })
}

impl Running {
    /// Drains, stops every listener, then writes pending last-used times.
    /// The drain and the listeners take at most `grace`; the final flush
    /// bounds itself by `GATEPASS_SHUTDOWN_TIMEOUT` and logs what it could
    /// not write.
    pub async fn stop(self, grace: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + grace;
        // Health checkers see NOT_SERVING while in-flight checks finish.
        set_health(&self.health, false).await;
        self.drain.until_quiet(deadline).await;
        let _ = self.stop_grpc.send(true);
        let listeners = async {
            tokio::join!(self.http.stop(true), self.ops.stop(true));
            for task in self.tasks {
                task.await.context("server task panicked")??;
            }
            anyhow::Ok(())
        };
        let stopped = tokio::time::timeout_at(deadline, listeners)
            .await
            .map_err(|_| anyhow::anyhow!("in-flight requests did not finish within {grace:?}"));
        let _ = self.stop_background.send(true);
        for task in self.background {
            task.await.context("background task panicked")?;
        }
        stopped?
    }
}

/// gRPC health for the whole server and for the Authorization service.
async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(
            <AuthorizationServer<ExtAuthz> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Reports NOT_SERVING over gRPC health while the store is unreachable (or
/// its migrations are behind), SERVING again once it answers.
async fn report_store_health(
    store: Store,
    reporter: HealthReporter,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut serving = true;
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = ticks.tick() => {}
        }
        let ready = matches!(
            tokio::time::timeout(Duration::from_secs(1), store.ready()).await,
            Ok(Ok(true))
        );
        if ready != serving {
            serving = ready;
            set_health(&reporter, serving).await;
            if serving {
                tracing::info!("store reachable again: gRPC health SERVING");
            } else {
                tracing::warn!("store unreachable: gRPC health NOT_SERVING");
            }
        }
    }
}
