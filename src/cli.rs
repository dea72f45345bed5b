//! The command line (SPEC §8). Everything but `token issue`'s token and the
//! lists goes to stderr, so `TOKEN=$(gatepass token issue billing)` works.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cache::Tiers;
use crate::check::Authorizer;
use crate::config::{Settings, SettingsArgs};
use crate::decision::{AuthorizationHeader, CheckRequest, Decision};
use crate::metrics::Metrics;
use crate::model::{Requirements, TokenKind, parse_ability_list};
use crate::policy_file::{PolicyError, PolicyHandle};
use crate::provision::{self, Lifetime, ProvisionError, TokenRequest};
use crate::store::{Schema, Service, ServiceChange, Store, TokenInfo};
use crate::{server, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "gatepass",
    version,
    about = "Edge authentication for service-to-service tokens (Envoy ext_authz, nginx auth_request)"
)]
pub struct Cli {
    #[command(
        flatten,
        next_help_heading = "Settings (flag, then GATEPASS_* variable, then --config file)"
    )]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC, HTTP and ops surfaces (applies migrations first)
    Serve,
    /// Apply database migrations and exit
    Migrate {
        /// Sanctum schema: remove what gatepass added to the Laravel database (its triggers and gatepass_ tables), nothing else
        #[arg(long)]
        undo_sanctum: bool,
    },
    /// Manage calling services
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Manage tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Explain the decision for a token (`-` reads it from stdin); exit 0 on allow, 1 on deny
    Check {
        token: String,
        /// Client address to check against the service's allowlist
        #[arg(long)]
        ip: Option<String>,
        /// Abilities that must all be held (comma-separated)
        #[arg(long)]
        require_all: Option<String>,
        /// Abilities of which one must be held (comma-separated)
        #[arg(long)]
        require_any: Option<String>,
        /// Request method, for the route policy
        #[arg(long, default_value = "GET")]
        method: String,
        /// Request host, for the route policy
        #[arg(long, default_value = "")]
        host: String,
        /// Request path, for the route policy
        #[arg(long, default_value = "/")]
        path: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service, or update the fields given
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// IP allowlist: CIDRs and addresses, comma-separated; "" allows any address
        #[arg(long)]
        ips: Option<String>,
    },
    /// List services
    List {
        #[arg(long)]
        json: bool,
    },
    /// Deny every token of a service
    Disable { name: String },
    /// Accept the tokens of a service again
    Enable { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print it, and only it, on stdout
    Issue {
        service: String,
        #[arg(long, default_value = "default")]
        name: String,
        /// Comma-separated abilities; `*` grants all, `prefix:*` a namespace
        #[arg(long, default_value = "*")]
        abilities: String,
        /// Lifetime such as 90s, 15m, 12h or 30d [default: never expires]
        #[arg(long)]
        expires_in: Option<String>,
        /// Issue a refresh token instead of an access token
        #[arg(long)]
        refresh: bool,
    },
    /// List tokens, of one service or all
    List {
        service: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id
    Revoke { id: String },
    /// Delete tokens that expired or were revoked more than --hours ago
    Prune {
        #[arg(long, default_value_t = 24)]
        hours: u32,
    },
}

/// A failure the user can act on: bad input exits 2, anything else 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) => ExitCode::from(2),
            Self::Failed(_) => ExitCode::FAILURE,
        }
    }
}

fn usage(error: impl std::fmt::Display) -> CliError {
    CliError::Usage(error.to_string())
}

pub async fn run(command: Command, settings: Settings) -> Result<ExitCode, CliError> {
    let store = Store::connect(&settings.store).map_err(usage)?;
    // Every command works on a fresh database, the embedded default above all.
    if !matches!(command, Command::Migrate { .. }) {
        store.migrate().await.context("cannot apply migrations")?;
    }
    match command {
        Command::Serve => serve(settings, store).await,
        Command::Migrate {
            undo_sanctum: false,
        } => {
            store.migrate().await.context("cannot apply migrations")?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { undo_sanctum: true } => {
            if !matches!(settings.store.schema, Schema::Sanctum(_)) {
                return Err(usage("--undo-sanctum needs GATEPASS_SCHEMA=sanctum"));
            }
            store
                .undo_sanctum()
                .await
                .context("cannot remove gatepass from the Laravel database")?;
            eprintln!("removed gatepass's triggers and tables; Laravel's are untouched");
            Ok(ExitCode::SUCCESS)
        }
        Command::Service(command) => service(command, &store).await,
        Command::Token(command) => token(command, &settings, &store).await,
        Command::Check {
            token,
            ip,
            require_all,
            require_any,
            method,
            host,
            path,
        } => {
            let route = Route { method, host, path };
            check(&settings, store, token, ip, require_all, require_any, route).await
        }
    }
}

async fn serve(settings: Settings, store: Store) -> Result<ExitCode, CliError> {
    let shutdown = crate::shutdown::ShutdownSignal::install()
        .context("cannot listen for SIGTERM and SIGINT")?;
    let empty = store
        .list_services()
        .await
        .context("cannot read services")?
        .is_empty();
    let running = server::start(&settings, store).await.map_err(|error| {
        match error.downcast_ref::<PolicyError>() {
            Some(policy) => usage(format!("invalid GATEPASS_POLICY_FILE: {policy}")),
            None => CliError::Failed(error),
        }
    })?;
    tracing::info!(
        grpc = %running.grpc_addr,
        http = %running.http_addr,
        ops = %running.ops_addr,
        version = env!("CARGO_PKG_VERSION"),
        "gatepass serving"
    );
    if empty {
        print_first_steps(running.http_addr);
    }
    shutdown.received().await;
    tracing::info!("shutting down: finishing in-flight checks");
    running.stop(settings.shutdown_timeout).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn service(command: ServiceCommand, store: &Store) -> Result<ExitCode, CliError> {
    match command {
        ServiceCommand::Create {
            name,
            description,
            ips,
        } => {
            let change = ServiceChange {
                name: provision::parse_service_name(&name)?,
                description,
                ip_allowlist: ips.as_deref().map(provision::parse_allowlist).transpose()?,
            };
            let (service, created) = provision::save_service(store, &change).await?;
            let verb = if created { "created" } else { "updated" };
            eprintln!("{verb} service {} (id {})", service.name, service.id);
        }
        ServiceCommand::List { json } => {
            let services = store
                .list_services()
                .await
                .context("cannot list services")?;
            if json {
                print_json(&services)?;
            } else {
                print_services(&services)?;
            }
        }
        ServiceCommand::Disable { name } => set_active(store, &name, false).await?,
        ServiceCommand::Enable { name } => set_active(store, &name, true).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_active(store: &Store, name: &str, active: bool) -> Result<(), CliError> {
    let name = provision::parse_service_name(name)?;
    let service = provision::set_service_active(store, &name, active).await?;
    let state = if active { "enabled" } else { "disabled" };
    eprintln!("{state} service {} (id {})", service.name, service.id);
    Ok(())
}

async fn token(
    command: TokenCommand,
    settings: &Settings,
    store: &Store,
) -> Result<ExitCode, CliError> {
    match command {
        TokenCommand::Issue {
            service,
            name,
            abilities,
            expires_in,
            refresh,
        } => {
            let request = TokenRequest {
                service: provision::parse_service_name(&service)?,
                name,
                abilities: parse_ability_list(&abilities)
                    .map_err(|e| ProvisionError::Invalid(e.to_string()))?,
                lifetime: expires_in.as_deref().map(Lifetime::parse).transpose()?,
                kind: if refresh {
                    TokenKind::Refresh
                } else {
                    TokenKind::Access
                },
            };
            let (issued, info) =
                provision::issue_token(store, &settings.token_format, request).await?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", issued.expose()).context("cannot write the token")?;
            eprintln!(
                "issued {} token {} for {} (abilities: {}; expires: {})",
                info.kind,
                info.id,
                info.service,
                info.abilities.join(","),
                when(info.expires_at, "never"),
            );
        }
        TokenCommand::List { service, json } => {
            let service = service
                .as_deref()
                .map(provision::parse_service_name)
                .transpose()?;
            let tokens = provision::list_tokens(store, service.as_ref()).await?;
            if json {
                print_json(&tokens)?;
            } else {
                print_tokens(&tokens)?;
            }
        }
        TokenCommand::Revoke { id } => {
            let info = provision::revoke_token(store, provision::parse_token_id(&id)?).await?;
            eprintln!(
                "revoked token {} of {} at {}",
                info.id,
                info.service,
                when(info.revoked_at, "-")
            );
        }
        TokenCommand::Prune { hours } => {
            let pruned = provision::prune_tokens(store, hours).await?;
            eprintln!("pruned {pruned} tokens expired or revoked more than {hours}h ago");
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl From<ProvisionError> for CliError {
    fn from(error: ProvisionError) -> Self {
        match error {
            ProvisionError::Invalid(message) => CliError::Usage(message),
            ProvisionError::Store(error) => CliError::Failed(error.into()),
        }
    }
}

/// The request a `check` pretends to be, for the route policy.
struct Route {
    method: String,
    host: String,
    path: String,
}

async fn check(
    settings: &Settings,
    store: Store,
    token: String,
    ip: Option<String>,
    require_all: Option<String>,
    require_any: Option<String>,
    route: Route,
) -> Result<ExitCode, CliError> {
    // `-` keeps the token out of the process list and shell history.
    let token = if token == "-" {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("cannot read the token from stdin")?;
        input.trim().to_owned()
    } else {
        token
    };
    let client_ip = ip
        .map(|raw| {
            raw.parse::<IpAddr>()
                .map_err(|_| usage(format!("--ip {raw:?} is not an IP address")))
        })
        .transpose()?;
    let mut requirements = Requirements::default();
    if let Some(all) = &require_all {
        requirements.require_all(all);
    }
    if let Some(any) = &require_any {
        requirements.require_any(any);
    }
    let authorization = format!("Bearer {token}");
    let request = CheckRequest {
        authorization: AuthorizationHeader::One(authorization.as_bytes()),
        client_ip,
        method: route.method.as_bytes(),
        host: route.host.as_bytes(),
        path: route.path.as_bytes(),
        requirements,
    };
    let policy = settings
        .policy_file
        .as_deref()
        .map(PolicyHandle::open)
        .transpose()
        .map_err(|e| usage(format!("invalid GATEPASS_POLICY_FILE: {e}")))?;
    let max_age = settings
        .token_max_age
        .map(chrono::Duration::from_std)
        .transpose()
        .map_err(usage)?;
    // Memory only, no usage recording: explaining a decision is not a use.
    let metrics = Metrics::new().context("cannot set up metrics")?;
    let tiers = Tiers::new(store, None, &settings.cache, metrics);
    let authorizer = Authorizer::new(tiers, None, settings.token_format.clone(), max_age)
        .with_policy(policy)
        .with_ability_matching(settings.ability_matching);
    let verdict = authorizer
        .check(&request)
        .await
        .map_err(|error| anyhow::anyhow!("cannot reach the token store: {error}"))?;
    match verdict.decision {
        Decision::Allow(record) => {
            println!(
                "allow: service {} (id {}), token {}, abilities {}",
                record.service.name,
                record.service.id,
                record.id,
                record.abilities.header_value()
            );
            Ok(ExitCode::SUCCESS)
        }
        Decision::Deny(reason) => {
            println!(
                "deny: {} ({}): {}",
                reason.as_str(),
                reason.http_status(),
                reason.description()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn when(at: Option<DateTime<Utc>>, none: &str) -> String {
    at.map_or_else(
        || none.to_owned(),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    writeln!(stdout)?;
    Ok(())
}

fn print_table(header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut stdout = std::io::stdout().lock();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(stdout, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

fn print_services(services: &[Service]) -> anyhow::Result<()> {
    let rows = services
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.name.clone(),
                if s.is_active { "yes" } else { "no" }.to_owned(),
                if s.ip_allowlist.is_empty() {
                    "any".to_owned()
                } else {
                    s.ip_allowlist.to_string()
                },
                s.description.clone(),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "ACTIVE", "ALLOWLIST", "DESCRIPTION"], rows)
}

fn print_tokens(tokens: &[TokenInfo]) -> anyhow::Result<()> {
    let rows = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.service.clone(),
                t.name.clone(),
                t.kind.to_owned(),
                t.abilities.join(","),
                when(t.expires_at, "never"),
                when(t.last_used_at, "-"),
                when(t.revoked_at, "-"),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "SERVICE",
            "NAME",
            "KIND",
            "ABILITIES",
            "EXPIRES",
            "LAST_USED",
            "REVOKED",
        ],
        rows,
    )
}

/// Parses arguments, loads settings, starts logging and runs the command.
/// The command line, with `--help` showing each setting's default as
/// [`crate::config::shown_defaults`] has it.
pub fn parse_command_line() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

fn command() -> clap::Command {
    crate::config::shown_defaults()
        .into_iter()
        .fold(Cli::command(), |command, (id, shown)| {
            command.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {shown}]"))
            })
        })
}

pub async fn main() -> ExitCode {
    let cli = parse_command_line();
    let settings = match Settings::load(&cli.settings) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gatepass: {error}");
            return ExitCode::from(2);
        }
    };
    let serving = matches!(cli.command, Command::Serve);
    telemetry::init(&settings, serving);
    match run(cli.command, settings).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gatepass: {}", one_line(&error));
            error.exit_code()
        }
    }
}

/// On an empty store, shows the way to a first allowed check.
fn print_first_steps(http_addr: std::net::SocketAddr) {
    let program = std::env::args()
        .next()
        .unwrap_or_else(|| "gatepass".to_owned());
    let port = http_addr.port();
    eprintln!(
        "\nNo services yet. In another terminal, from this directory:\n\
         \n  {program} service create demo\
         \n  TOKEN=$({program} token issue demo --abilities orders:read)\
         \n  curl -i http://127.0.0.1:{port}/auth -H \"Authorization: Bearer $TOKEN\"\
         \n\nThe last command answers 200 with x-gatepass-* headers.\n"
    );
}

/// The error and its causes on one line.
fn one_line(error: &CliError) -> String {
    match error {
        CliError::Usage(message) => message.clone(),
        CliError::Failed(error) => {
            // Causes often repeat their source's text; say each thing once.
            let mut line = String::new();
            for cause in error.chain() {
                let cause = cause.to_string().replace('\n', " ");
                if !line.contains(&cause) {
                    if !line.is_empty() {
                        line.push_str(": ");
                    }
                    line.push_str(&cause);
                }
            }
            line
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_shows_each_default_once_from_the_settings_defaults() {
        let command = command();
        command.clone().debug_assert();
        for (id, shown) in crate::config::shown_defaults() {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == id)
                .unwrap_or_else(|| panic!("no flag {id}"));
            let help = arg.get_help().unwrap().to_string();
            assert_eq!(help.matches("[default:").count(), 1, "{id}: {help}");
            assert!(
                help.ends_with(&format!("[default: {shown}]")),
                "{id}: {help}"
            );
        }
    }
}
