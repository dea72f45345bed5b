//! Provisioning, shared by the CLI and the admin API: what operators send is
//! validated here, and tokens are issued here (the only place a secret is
//! generated).

use chrono::{DateTime, Utc};

use crate::duration;
use crate::model::{Ability, NetList, ServiceName, TokenKind};
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

/// Creates the service, or updates the fields given (an empty allowlist
/// clears it). Returns whether it was created.
pub async fn save_service(
    store: &Store,
    change: &ServiceChange,
) -> Result<(Service, bool), ProvisionError> {
    if change.description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(invalid("description must be at most 1024 characters"));
    }
    Ok(store.upsert_service(change).await?)
}

pub async fn set_service_active(
    store: &Store,
    name: &ServiceName,
    active: bool,
) -> Result<Service, ProvisionError> {
    Ok(store.set_service_active(name, active).await?)
}

/// What issuing a token asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub service: ServiceName,
    pub name: String,
    /// `*` grants all.
    pub abilities: Vec<Ability>,
    /// `None` never expires.
    pub lifetime: Option<Lifetime>,
    pub kind: TokenKind,
}

/// Issues a token: the plain text, to be shown once, and its row.
pub async fn issue_token(
    store: &Store,
    format: &TokenFormat,
    request: TokenRequest,
) -> Result<(IssuedToken, TokenInfo), ProvisionError> {
    let name = request.name;
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(invalid("token name must be 1 to 255 printable characters"));
    }
    let mut abilities = request.abilities;
    abilities.sort();
    abilities.dedup();
    let expires_at = request.lifetime.map(Lifetime::expiry).transpose()?;
    let secret = format.generate_secret();
    let info = store
        .insert_token(&NewToken {
            service: request.service,
            name,
            digest: secret.digest(),
            abilities,
            kind: request.kind,
            expires_at,
        })
        .await?;
    Ok((IssuedToken::new(info.id, secret), info))
}

pub async fn list_tokens(
    store: &Store,
    service: Option<&ServiceName>,
) -> Result<Vec<TokenInfo>, ProvisionError> {
    Ok(store.list_tokens(service).await?)
}

pub async fn revoke_token(store: &Store, id: i64) -> Result<TokenInfo, ProvisionError> {
    Ok(store.revoke_token(id).await?)
}

/// Deletes tokens that expired or were revoked more than `hours` ago.
pub async fn prune_tokens(store: &Store, hours: u32) -> Result<u64, ProvisionError> {
    let before = Utc::now() - chrono::Duration::hours(i64::from(hours));
    Ok(store.prune_tokens(before).await?)
}

/// The words every provisioning surface reads alike; each surface reads
/// its own lists and bodies around them.
pub fn parse_service_name(name: &str) -> Result<ServiceName, ProvisionError> {
    ServiceName::parse(name).map_err(invalid)
}

pub fn parse_token_id(id: &str) -> Result<i64, ProvisionError> {
    id.parse()
        .map_err(|_| invalid(format!("token id {id:?} is not a number")))
}

pub fn parse_allowlist(list: &str) -> Result<NetList, ProvisionError> {
    NetList::parse(list).map_err(invalid)
}

/// A token lifetime as written (`30d`), kept for its error messages.
#[derive(Debug, Clone)]
pub struct Lifetime {
    written: String,
    lifetime: chrono::Duration,
}

impl Lifetime {
    pub fn parse(raw: &str) -> Result<Self, ProvisionError> {
        let lifetime =
            duration::parse(raw).map_err(|e| invalid(format!("expires in {raw:?}: {e}")))?;
        let lifetime = chrono::Duration::from_std(lifetime).map_err(|_| too_long(raw))?;
        Ok(Self {
            written: raw.to_owned(),
            lifetime,
        })
    }

    fn expiry(self) -> Result<DateTime<Utc>, ProvisionError> {
        Utc::now()
            .checked_add_signed(self.lifetime)
            .ok_or_else(|| too_long(&self.written))
    }
}

fn too_long(raw: &str) -> ProvisionError {
    invalid(format!("expires in {raw:?} is too long"))
}
