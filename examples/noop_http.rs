//! The HTTP baseline of `benches/run`: an actix-web server answering every
//! request 200 with the same four identity headers as gatepass's `/auth`,
//! deciding nothing. As many workers as gatepass's HTTP surface (one per CPU
//! unless a count is given), so the gap between the two is what a check
//! costs.
//!
//!     cargo run --release --example noop_http -- 127.0.0.1:8081 [workers]

use actix_web::{App, HttpResponse, HttpServer, web};

async fn allow() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("x-gatepass-service", "bench"))
        .insert_header(("x-gatepass-service-id", 1_i64))
        .insert_header(("x-gatepass-token-id", 1_i64))
        .insert_header(("x-gatepass-abilities", "orders:read,orders:write"))
        .finish()
}

/// The subscriber gatepass installs (`GATEPASS_LOG_LEVEL=info`, text, stderr).
/// Without one, `tracing` falls back to the `log` crate and formats every
/// span tonic and h2 open, which would make the baseline slower than it is.
fn logging() {
    let filter = tracing_subscriber::EnvFilter::new("info,sqlx=warn,actix_server=warn");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    logging();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    // gatepass's default: GATEPASS_HTTP_WORKERS = the CPU count.
    let workers = match args.next() {
        Some(count) => count
            .parse()
            .map_err(|_| std::io::Error::other(format!("not a worker count: {count}")))?,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let listener = std::net::TcpListener::bind(&addr)?;
    eprintln!(
        "noop_http: listening on {} with {workers} workers",
        listener.local_addr()?
    );
    HttpServer::new(|| {
        App::new()
            .route("/auth", web::route().to(allow))
            .default_service(web::route().to(allow))
    })
    .workers(workers)
    .listen(listener)?
    .run()
    .await
}
