//! A check end to end: the token looked up through the cache tiers, the
//! route policy applied, the decision taken, the use recorded; and the
//! refresh rotation, which reads the database directly.

use std::sync::Arc;

use chrono::Utc;

use crate::cache::{Outcome, Tiers};
use crate::decision::{CheckRequest, Decision, DecisionContext, DenyReason, decide};
use crate::model::{AbilityMatching, Requirements, TokenKind, TokenRecord};
use crate::policy_file::PolicyHandle;
use crate::store::{StoreError, Successor};
use crate::token::{IssuedToken, TokenFormat, TokenKey};
use crate::usage::UsageRecorder;

/// A decision with what explains it: which tier answered (`None` when the
/// token was rejected before any lookup) and the token found, if any (a
/// denial's log line names its service and id).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    pub outcome: Option<Outcome>,
    pub record: Option<Arc<TokenRecord>>,
}

impl Verdict {
    fn before_lookup(reason: DenyReason) -> Self {
        Self {
            decision: Decision::Deny(reason),
            outcome: None,
            record: None,
        }
    }
}

/// What the refresh endpoint answers.
#[derive(Debug, Clone)]
pub enum Refresh {
    /// The refresh token was spent; these replace it.
    Rotated {
        access: IssuedToken,
        refresh: IssuedToken,
        record: Arc<TokenRecord>,
    },
    Deny(DenyReason),
}

/// How long tokens issued by a refresh live.
#[derive(Debug, Clone, Copy)]
pub struct RefreshLifetimes {
    pub access: chrono::Duration,
    pub refresh: chrono::Duration,
}

impl Default for RefreshLifetimes {
    fn default() -> Self {
        Self {
            access: chrono::Duration::hours(1),
            refresh: chrono::Duration::days(30),
        }
    }
}

/// The only error a check can have: the answer cannot be known. Surfaces map
/// it to UNAVAILABLE / 503, never to an allow. Shared, because one failed
/// database query answers every check that was waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("token store unavailable: {0}")]
pub struct CheckError(pub Arc<StoreError>);

/// Resolves tokens and decides. Cheap to clone; shared by every surface.
#[derive(Debug, Clone)]
pub struct Authorizer {
    tiers: Tiers,
    usage: Option<UsageRecorder>,
    policy: Option<PolicyHandle>,
    format: TokenFormat,
    max_age: Option<chrono::Duration>,
    abilities: AbilityMatching,
}

impl Authorizer {
    /// `usage` records last-used times; the `check` command passes `None`
    /// because explaining a decision is not a use.
    pub fn new(
        tiers: Tiers,
        usage: Option<UsageRecorder>,
        format: TokenFormat,
        max_age: Option<chrono::Duration>,
    ) -> Self {
        Self {
            tiers,
            usage,
            policy: None,
            format,
            max_age,
            abilities: AbilityMatching::default(),
        }
    }

    /// Adds route requirements from a policy file.
    pub fn with_policy(mut self, policy: Option<PolicyHandle>) -> Self {
        self.policy = policy;
        self
    }

    /// How held abilities meet required ones (`GATEPASS_ABILITY_WILDCARDS`).
    pub fn with_ability_matching(mut self, abilities: AbilityMatching) -> Self {
        self.abilities = abilities;
        self
    }

    /// The token format tokens are parsed and generated in.
    pub fn format(&self) -> &TokenFormat {
        &self.format
    }

    pub async fn check(&self, request: &CheckRequest<'_>) -> Result<Verdict, CheckError> {
        let token = match request.authorization.bearer_token() {
            Ok(token) => token,
            Err(reason) => return Ok(Verdict::before_lookup(reason)),
        };
        let Ok(presented) = self.format.parse(token) else {
            return Ok(Verdict::before_lookup(DenyReason::MalformedToken));
        };
        let now = Utc::now();
        let lookup = self
            .tiers
            .lookup(presented.key, now.timestamp_millis())
            .await
            .map_err(CheckError)?;
        let policy = self.policy.as_ref().map(PolicyHandle::current);
        let route_requirements = policy
            .as_ref()
            .map(|policy| policy.requirements_for(request.method, request.host, request.path));
        let context = DecisionContext {
            now,
            client_ip: request.client_ip,
            requirements: &request.requirements,
            route_requirements: route_requirements.as_deref(),
            max_age: self.max_age,
            expected_kind: TokenKind::Access,
            abilities: self.abilities,
        };
        let record = lookup.token.map(|token| token.record);
        let decision = decide(&presented, record.clone(), &context);
        if let (Decision::Allow(_), Some(usage), Some(record)) = (&decision, &self.usage, &record) {
            usage.record(record, now.timestamp());
        }
        Ok(Verdict {
            decision,
            outcome: Some(lookup.outcome),
            record,
        })
    }

    /// Spends a refresh token for a new access token and a new refresh
    /// token (same service, abilities and family). Read from the database,
    /// never from a cache: a refresh token is single-use, and presenting a
    /// spent one revokes its whole family (it was stolen, or replayed).
    pub async fn refresh(
        &self,
        request: &CheckRequest<'_>,
        lifetimes: RefreshLifetimes,
    ) -> Result<Refresh, CheckError> {
        let token = match request.authorization.bearer_token() {
            Ok(token) => token,
            Err(reason) => return Ok(Refresh::Deny(reason)),
        };
        let Ok(presented) = self.format.parse(token) else {
            return Ok(Refresh::Deny(DenyReason::MalformedToken));
        };
        let store = self.tiers.store();
        let found = match presented.key {
            TokenKey::Id(id) => store.find_token_by_id(id).await,
            TokenKey::Digest(digest) => store.find_token_by_digest(&digest).await,
        };
        let record = found.map_err(|e| CheckError(Arc::new(e)))?.map(Arc::new);
        let now = Utc::now();
        let requirements = Requirements::default();
        let context = DecisionContext {
            now,
            client_ip: request.client_ip,
            requirements: &requirements,
            route_requirements: None,
            max_age: self.max_age,
            expected_kind: TokenKind::Refresh,
            abilities: self.abilities,
        };
        let record = match decide(&presented, record.clone(), &context) {
            Decision::Allow(record) => record,
            Decision::Deny(DenyReason::TokenRevoked) => {
                if let Some(record) = record.filter(|r| r.kind == TokenKind::Refresh) {
                    self.revoke_family(&record).await?;
                }
                return Ok(Refresh::Deny(DenyReason::TokenRevoked));
            }
            Decision::Deny(reason) => return Ok(Refresh::Deny(reason)),
        };
        let access_secret = self.format.generate_secret();
        let refresh_secret = self.format.generate_secret();
        let successor = |secret: &crate::token::Secret, lifetime| Successor {
            digest: secret.digest(),
            expires_at: now.checked_add_signed(lifetime),
        };
        let rotated = store
            .rotate_refresh_token(
                record.id,
                &successor(&access_secret, lifetimes.access),
                &successor(&refresh_secret, lifetimes.refresh),
            )
            .await
            .map_err(|e| CheckError(Arc::new(e)))?;
        let Some(rotated) = rotated else {
            // Spent between our read and our write: a concurrent replay.
            self.revoke_family(&record).await?;
            return Ok(Refresh::Deny(DenyReason::TokenRevoked));
        };
        tracing::info!(
            service = record.service.name.as_str(),
            spent = record.id,
            access = rotated.access_id,
            refresh = rotated.refresh_id,
            "refresh token rotated"
        );
        Ok(Refresh::Rotated {
            access: IssuedToken::new(rotated.access_id, access_secret),
            refresh: IssuedToken::new(rotated.refresh_id, refresh_secret),
            record,
        })
    }

    async fn revoke_family(&self, record: &TokenRecord) -> Result<(), CheckError> {
        let revoked = self
            .tiers
            .store()
            .revoke_family(record.id)
            .await
            .map_err(|e| CheckError(Arc::new(e)))?;
        tracing::warn!(
            service = record.service.name.as_str(),
            token_id = record.id,
            revoked,
            "spent refresh token presented again: its family is revoked"
        );
        Ok(())
    }
}
