//! Provisioning, shared by the CLI and the admin API: what operators send is
//! validated here, and tokens are issued here (the only place a secret is
//! generated).

use chrono::{DateTime, Utc};

use crate::duration;
use crate::model::parse_ability_list;
use crate::model::{NetList, ServiceName, TokenKind};
use crate::store::{NewToken, Service, ServiceChange, Store, StoreError, TokenInfo};
use crate::token::{IssuedToken, TokenFormat};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The request itself is wrong: exit 2 on the CLI, 400 over HTTP.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(error: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::Invalid(error.to_string())
}

/// Creates the service, or updates the fields given; `ips` is a
/// comma-separated allowlist (`""` clears it). Returns whether it was
/// created.
pub async fn save_service(
    store: &Store,
    name: &str,
    description: Option<String>,
    ips: Option<&str>,
) -> Result<(Service, bool), ProvisionError> {
    if description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(invalid("description must be at most 1024 characters"));
    }
    let change = ServiceChange {
        name: ServiceName::parse(name).map_err(invalid)?,
        description,
        ip_allowlist: ips.map(NetList::parse).transpose().map_err(invalid)?,
    };
    Ok(store.upsert_service(&change).await?)
}

pub async fn set_service_active(
    store: &Store,
    name: &str,
    active: bool,
) -> Result<Service, ProvisionError> {
    let name = ServiceName::parse(name).map_err(invalid)?;
    Ok(store.set_service_active(&name, active).await?)
}

/// What `token issue` asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    pub service: &'a str,
    pub name: &'a str,
    /// Comma-separated; `*` grants all.
    pub abilities: &'a str,
    /// A duration such as `30d`; `None` never expires.
    pub expires_in: Option<&'a str>,
    pub refresh: bool,
}

/// Issues a token: the plain text, to be shown once, and its row.
pub async fn issue_token(
    store: &Store,
    format: &TokenFormat,
    request: &TokenRequest<'_>,
) -> Result<(IssuedToken, TokenInfo), ProvisionError> {
    let name = request.name;
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(invalid("token name must be 1 to 255 printable characters"));
    }
    let service = ServiceName::parse(request.service).map_err(invalid)?;
    let abilities = parse_ability_list(request.abilities).map_err(invalid)?;
    let expires_at = request.expires_in.map(expiry).transpose()?;
    let secret = format.generate_secret();
    let info = store
        .insert_token(&NewToken {
            service,
            name: name.to_owned(),
            digest: secret.digest(),
            abilities,
            kind: if request.refresh {
                TokenKind::Refresh
            } else {
                TokenKind::Access
            },
            expires_at,
        })
        .await?;
    Ok((IssuedToken::new(info.id, secret), info))
}

pub async fn list_tokens(
    store: &Store,
    service: Option<&str>,
) -> Result<Vec<TokenInfo>, ProvisionError> {
    let service = service
        .map(ServiceName::parse)
        .transpose()
        .map_err(invalid)?;
    Ok(store.list_tokens(service.as_ref()).await?)
}

pub async fn revoke_token(store: &Store, id: &str) -> Result<TokenInfo, ProvisionError> {
    let id: i64 = id
        .parse()
        .map_err(|_| invalid(format!("token id {id:?} is not a number")))?;
    Ok(store.revoke_token(id).await?)
}

/// Deletes tokens that expired or were revoked more than `hours` ago.
pub async fn prune_tokens(store: &Store, hours: u32) -> Result<u64, ProvisionError> {
    let before = Utc::now() - chrono::Duration::hours(i64::from(hours));
    Ok(store.prune_tokens(before).await?)
}

fn expiry(raw: &str) -> Result<DateTime<Utc>, ProvisionError> {
    let lifetime = duration::parse(raw).map_err(|e| invalid(format!("expires in {raw:?}: {e}")))?;
    chrono::Duration::from_std(lifetime)
        .ok()
        .and_then(|lifetime| Utc::now().checked_add_signed(lifetime))
        .ok_or_else(|| invalid(format!("expires in {raw:?} is too long")))
}
