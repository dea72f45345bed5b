//! The decision core (SPEC §3): one function from a transport-neutral
//! request to `Allow` or `Deny`. Every surface (gRPC, HTTP, the `check`
//! command) translates into [`CheckRequest`] and out of [`Decision`]; none
//! decides anything itself.

pub mod abilities;
pub mod client_ip;
pub mod policy;

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::cache::{Outcome, Tiers};
use crate::store::StoreError;
use crate::store::Successor;
use crate::token::{IssuedToken, PresentedToken, TokenFormat, TokenKey};
use crate::usage::UsageRecorder;
pub use abilities::{Abilities, Ability, Requirements};
pub use client_ip::NetList;
use policy::PolicyHandle;

/// A calling system, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub id: i64,
    /// Bumped on every change that can alter a decision (cache ordering).
    pub version: i64,
    pub name: String,
    pub is_active: bool,
    pub ip_allowlist: NetList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "access" => Some(Self::Access),
            "refresh" => Some(Self::Refresh),
            _ => None,
        }
    }
}

/// A token row together with its service: everything a decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    /// Bumped on every change that can alter a decision (cache ordering).
    pub version: i64,
    pub digest: crate::token::TokenDigest,
    pub kind: TokenKind,
    /// Shared by every cached token with the same abilities.
    pub abilities: Arc<Abilities>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Shared by every cached token of the service.
    pub service: Arc<ServiceRecord>,
}

/// Why a request was denied; the first failing row of SPEC §3 decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    MissingToken,
    MalformedToken,
    InvalidToken,
    TokenRevoked,
    TokenExpired,
    WrongTokenKind,
    ServiceDisabled,
    IpNotAllowed,
    InsufficientAbility,
}

impl DenyReason {
    pub const ALL: [DenyReason; 9] = [
        Self::MissingToken,
        Self::MalformedToken,
        Self::InvalidToken,
        Self::TokenRevoked,
        Self::TokenExpired,
        Self::WrongTokenKind,
        Self::ServiceDisabled,
        Self::IpNotAllowed,
        Self::InsufficientAbility,
    ];

    /// Position in [`DenyReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::MalformedToken => "malformed_token",
            Self::InvalidToken => "invalid_token",
            Self::TokenRevoked => "token_revoked",
            Self::TokenExpired => "token_expired",
            Self::WrongTokenKind => "wrong_token_kind",
            Self::ServiceDisabled => "service_disabled",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::InsufficientAbility => "insufficient_ability",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::MissingToken => "no bearer token was sent",
            Self::MalformedToken => "the bearer token is not a well-formed gatepass token",
            Self::InvalidToken => "the bearer token is not known",
            Self::TokenRevoked => "the bearer token was revoked",
            Self::TokenExpired => "the bearer token has expired",
            Self::WrongTokenKind => "refresh tokens are only accepted at the refresh endpoint",
            Self::ServiceDisabled => "the calling service is disabled",
            Self::IpNotAllowed => "the client address is not in the service's allowlist",
            Self::InsufficientAbility => "the token lacks an ability this route requires",
        }
    }

    /// 401 for problems with the credential, 403 for a valid credential
    /// that may not do this.
    pub fn http_status(self) -> u16 {
        if self.is_unauthenticated() { 401 } else { 403 }
    }

    pub fn is_unauthenticated(self) -> bool {
        matches!(
            self,
            Self::MissingToken
                | Self::MalformedToken
                | Self::InvalidToken
                | Self::TokenRevoked
                | Self::TokenExpired
                | Self::WrongTokenKind
        )
    }

    /// `WWW-Authenticate` for a 401 as RFC 6750 §3 writes it.
    pub fn www_authenticate(self) -> Option<&'static str> {
        match self {
            Self::MissingToken => Some(r#"Bearer realm="gatepass""#),
            reason if reason.is_unauthenticated() => {
                Some(r#"Bearer realm="gatepass", error="invalid_token""#)
            }
            _ => None,
        }
    }

    /// `{"error":"<reason>","error_description":"…"}`. Both parts are
    /// fixed strings without characters JSON would escape.
    pub fn json_body(self) -> String {
        format!(
            r#"{{"error":"{}","error_description":"{}"}}"#,
            self.as_str(),
            self.description()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Arc<TokenRecord>),
    Deny(DenyReason),
}

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

/// A check as every surface sees it. `method`, `host` and `path` are what
/// route policies match on, as the bytes the proxy sent.
#[derive(Debug, Clone, Default)]
pub struct CheckRequest<'a> {
    pub authorization: AuthorizationHeader<'a>,
    pub client_ip: Option<IpAddr>,
    pub method: &'a [u8],
    pub host: &'a [u8],
    pub path: &'a [u8],
    /// Requirements the proxy added for this route.
    pub requirements: Requirements,
}

/// The `Authorization` header of a request, as raw bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthorizationHeader<'a> {
    #[default]
    Absent,
    One(&'a [u8]),
    /// Sent more than once: a proxy or the service behind it may read
    /// another copy than gatepass did, so none of them counts.
    Repeated,
}

impl<'a> AuthorizationHeader<'a> {
    /// From every value the request carries for the header.
    pub fn from_values(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut values = values.into_iter();
        match (values.next(), values.next()) {
            (None, _) => Self::Absent,
            (Some(value), None) => Self::One(value),
            (Some(_), Some(_)) => Self::Repeated,
        }
    }

    /// The bearer token, or why there is none: no bearer credential is
    /// `missing_token`; two credentials (a repeated header, or values
    /// joined by `,` as Envoy joins repeated headers) are `malformed_token`.
    pub fn bearer_token(self) -> Result<&'a [u8], DenyReason> {
        let value = match self {
            Self::Absent => return Err(DenyReason::MissingToken),
            Self::Repeated => return Err(DenyReason::MalformedToken),
            Self::One(value) => value,
        };
        // No credential gatepass accepts contains a comma; a value that
        // does is several credentials joined, whichever scheme comes first.
        if value.contains(&b',') {
            return Err(DenyReason::MalformedToken);
        }
        bearer_token(value).ok_or(DenyReason::MissingToken)
    }
}

/// The only error a check can have: the answer cannot be known. Surfaces map
/// it to UNAVAILABLE / 503, never to an allow. Shared, because one failed
/// database query answers every check that was waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("token store unavailable: {0}")]
pub struct CheckError(pub Arc<StoreError>);

/// What the decision needs besides the token record.
#[derive(Debug, Clone)]
pub struct DecisionContext<'a> {
    pub now: DateTime<Utc>,
    pub client_ip: Option<IpAddr>,
    /// What the proxy asked for.
    pub requirements: &'a Requirements,
    /// What the route policy asks for; both must hold.
    pub route_requirements: Option<&'a Requirements>,
    pub max_age: Option<chrono::Duration>,
    /// `Access` everywhere but at the refresh endpoint.
    pub expected_kind: TokenKind,
}

/// Rows 3 to 9 of the decision table, in order, as a pure function. `record`
/// is what the store found for the presented token's key.
pub fn decide(
    presented: &PresentedToken,
    record: Option<Arc<TokenRecord>>,
    context: &DecisionContext<'_>,
) -> Decision {
    let Some(record) = record.filter(|record| record.digest.matches(&presented.digest)) else {
        return Decision::Deny(DenyReason::InvalidToken);
    };
    let now = context.now;
    let expired = record.expires_at.is_some_and(|at| at <= now)
        || context
            .max_age
            .is_some_and(|max_age| record.created_at + max_age <= now);
    // Any revocation counts at once: comparing with our clock would let a
    // skew between gatepass and the database resurrect a revoked token.
    let reason = if record.revoked_at.is_some() {
        Some(DenyReason::TokenRevoked)
    } else if expired {
        Some(DenyReason::TokenExpired)
    } else if record.kind != context.expected_kind {
        Some(DenyReason::WrongTokenKind)
    } else if !record.service.is_active {
        Some(DenyReason::ServiceDisabled)
    } else if !record.service.ip_allowlist.admits(context.client_ip) {
        Some(DenyReason::IpNotAllowed)
    } else if !context.requirements.satisfied_by(&record.abilities)
        || !context
            .route_requirements
            .is_none_or(|route| route.satisfied_by(&record.abilities))
    {
        Some(DenyReason::InsufficientAbility)
    } else {
        None
    };
    match reason {
        Some(reason) => Decision::Deny(reason),
        None => Decision::Allow(record),
    }
}

/// Returns the token of an `Authorization: Bearer <token>` header; the
/// scheme is case-insensitive. `None` when another scheme is used, which
/// counts as no bearer credential at all (RFC 6750 §3).
pub fn bearer_token(authorization: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let trimmed = authorization.trim_ascii();
    let (scheme, rest) = trimmed.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    match rest.first() {
        None => Some(rest),
        Some(b' ' | b'\t') => Some(rest.trim_ascii_start()),
        Some(_) => None,
    }
}

/// Resolves tokens and decides. Cheap to clone; shared by every surface.
#[derive(Debug, Clone)]
pub struct Authorizer {
    tiers: Tiers,
    usage: Option<UsageRecorder>,
    policy: Option<PolicyHandle>,
    format: TokenFormat,
    max_age: Option<chrono::Duration>,
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
        }
    }

    /// Adds route requirements from a policy file.
    pub fn with_policy(mut self, policy: Option<PolicyHandle>) -> Self {
        self.policy = policy;
        self
    }

    pub fn tiers(&self) -> &Tiers {
        &self.tiers
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
        };
        let record = lookup.token.as_ref().map(|token| token.record.clone());
        let decision = decide(&presented, record.clone(), &context);
        if let (Decision::Allow(_), Some(usage), Some(token)) =
            (&decision, &self.usage, &lookup.token)
        {
            usage.record(token, now.timestamp());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::abilities::parse_ability_list;
    use crate::token::{TokenDigest, TokenKey};
    use chrono::Duration;

    const SECRET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";

    fn record() -> TokenRecord {
        TokenRecord {
            id: 7,
            version: 1,
            digest: TokenDigest::of(SECRET),
            kind: TokenKind::Access,
            abilities: Arc::new(Abilities::new(
                parse_ability_list("orders:read,inventory:*").unwrap(),
            )),
            expires_at: None,
            revoked_at: None,
            created_at: Utc::now() - Duration::hours(1),
            service: Arc::new(ServiceRecord {
                id: 3,
                version: 1,
                name: "billing".into(),
                is_active: true,
                ip_allowlist: NetList::default(),
            }),
        }
    }

    fn presented() -> PresentedToken {
        PresentedToken {
            key: TokenKey::Id(7),
            digest: TokenDigest::of(SECRET),
        }
    }

    fn decide_with(
        record: TokenRecord,
        client_ip: Option<IpAddr>,
        requirements: &Requirements,
    ) -> Decision {
        let context = DecisionContext {
            now: Utc::now(),
            client_ip,
            requirements,
            route_requirements: None,
            max_age: None,
            expected_kind: TokenKind::Access,
        };
        decide(&presented(), Some(Arc::new(record)), &context)
    }

    fn reason(decision: Decision) -> Option<DenyReason> {
        match decision {
            Decision::Allow(_) => None,
            Decision::Deny(reason) => Some(reason),
        }
    }

    fn none() -> Requirements {
        Requirements::default()
    }

    #[test]
    fn valid_token_is_allowed_with_its_record() {
        let decision = decide_with(record(), None, &none());
        assert!(matches!(decision, Decision::Allow(r) if r.service.name == "billing"));
    }

    #[test]
    fn unknown_token_is_invalid() {
        let context = DecisionContext {
            now: Utc::now(),
            client_ip: None,
            requirements: &none(),
            route_requirements: None,
            max_age: None,
            expected_kind: TokenKind::Access,
        };
        assert_eq!(
            reason(decide(&presented(), None, &context)),
            Some(DenyReason::InvalidToken)
        );
    }

    #[test]
    fn wrong_secret_for_known_id_is_invalid() {
        let mut wrong = record();
        wrong.digest = TokenDigest::of(b"something else");
        assert_eq!(
            reason(decide_with(wrong, None, &none())),
            Some(DenyReason::InvalidToken)
        );
    }

    #[test]
    fn revoked_token_is_denied_before_expiry_is_considered() {
        let mut revoked = record();
        revoked.revoked_at = Some(Utc::now() - Duration::seconds(1));
        revoked.expires_at = Some(Utc::now() - Duration::seconds(1));
        assert_eq!(
            reason(decide_with(revoked, None, &none())),
            Some(DenyReason::TokenRevoked)
        );
    }

    #[test]
    fn expired_token_is_denied() {
        let mut expired = record();
        expired.expires_at = Some(Utc::now() - Duration::seconds(1));
        assert_eq!(
            reason(decide_with(expired, None, &none())),
            Some(DenyReason::TokenExpired)
        );
        let mut future = record();
        future.expires_at = Some(Utc::now() + Duration::hours(1));
        assert_eq!(reason(decide_with(future, None, &none())), None);
    }

    #[test]
    fn global_max_age_expires_old_tokens() {
        let requirements = none();
        let context = DecisionContext {
            now: Utc::now(),
            client_ip: None,
            requirements: &requirements,
            route_requirements: None,
            max_age: Some(Duration::minutes(30)),
            expected_kind: TokenKind::Access,
        };
        let decision = decide(&presented(), Some(Arc::new(record())), &context);
        assert_eq!(reason(decision), Some(DenyReason::TokenExpired));
    }

    #[test]
    fn refresh_token_is_the_wrong_kind_after_expiry_checks() {
        let mut refresh = record();
        refresh.kind = TokenKind::Refresh;
        assert_eq!(
            reason(decide_with(refresh.clone(), None, &none())),
            Some(DenyReason::WrongTokenKind)
        );
        refresh.expires_at = Some(Utc::now() - Duration::seconds(1));
        assert_eq!(
            reason(decide_with(refresh, None, &none())),
            Some(DenyReason::TokenExpired)
        );
    }

    #[test]
    fn disabled_service_is_denied_before_ip_and_abilities() {
        let mut disabled = record();
        let service = Arc::make_mut(&mut disabled.service);
        service.is_active = false;
        service.ip_allowlist = NetList::parse("10.0.0.0/8").unwrap();
        let mut requirements = none();
        requirements.require_all("admin");
        assert_eq!(
            reason(decide_with(disabled, None, &requirements)),
            Some(DenyReason::ServiceDisabled)
        );
    }

    #[test]
    fn client_outside_allowlist_is_denied_before_abilities() {
        let mut listed = record();
        Arc::make_mut(&mut listed.service).ip_allowlist =
            NetList::parse("10.0.0.0/8, 2001:db8::/32").unwrap();
        let mut requirements = none();
        requirements.require_all("admin");
        let outside = Some("192.0.2.1".parse().unwrap());
        assert_eq!(
            reason(decide_with(listed.clone(), outside, &requirements)),
            Some(DenyReason::IpNotAllowed)
        );
        assert_eq!(
            reason(decide_with(listed.clone(), None, &none())),
            Some(DenyReason::IpNotAllowed)
        );
        let inside_v6 = Some("2001:db8::9".parse().unwrap());
        assert_eq!(
            reason(decide_with(listed.clone(), inside_v6, &none())),
            None
        );
        let mapped = Some("::ffff:10.9.9.9".parse().unwrap());
        assert_eq!(reason(decide_with(listed, mapped, &none())), None);
    }

    #[test]
    fn missing_ability_is_insufficient() {
        let mut requirements = none();
        requirements.require_all("orders:read,inventory:write");
        assert_eq!(reason(decide_with(record(), None, &requirements)), None);
        requirements.require_any("orders:write,billing:read");
        assert_eq!(
            reason(decide_with(record(), None, &requirements)),
            Some(DenyReason::InsufficientAbility)
        );
    }

    #[test]
    fn route_and_proxy_requirements_must_both_hold() {
        let mut proxy = none();
        proxy.require_all("orders:read");
        let mut route = none();
        route.require_all("billing:read");
        let mut context = DecisionContext {
            now: Utc::now(),
            client_ip: None,
            requirements: &proxy,
            route_requirements: None,
            max_age: None,
            expected_kind: TokenKind::Access,
        };
        let token = Arc::new(record());
        assert_eq!(
            reason(decide(&presented(), Some(token.clone()), &context)),
            None
        );
        context.route_requirements = Some(&route);
        assert_eq!(
            reason(decide(&presented(), Some(token), &context)),
            Some(DenyReason::InsufficientAbility)
        );
    }

    #[test]
    fn statuses_and_challenges_follow_the_table() {
        for reason in DenyReason::ALL {
            let unauthenticated = reason.http_status() == 401;
            assert_eq!(reason.www_authenticate().is_some(), unauthenticated);
            let body: serde_json::Value = serde_json::from_str(&reason.json_body()).unwrap();
            assert_eq!(body["error"], reason.as_str());
        }
        assert_eq!(DenyReason::ServiceDisabled.http_status(), 403);
        assert_eq!(DenyReason::IpNotAllowed.http_status(), 403);
        assert_eq!(DenyReason::InsufficientAbility.http_status(), 403);
        assert_eq!(
            DenyReason::MissingToken.www_authenticate(),
            Some(r#"Bearer realm="gatepass""#)
        );
        assert_eq!(
            DenyReason::TokenRevoked.www_authenticate(),
            Some(r#"Bearer realm="gatepass", error="invalid_token""#)
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_missing() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bEaReR   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer"), Some(&b""[..]));
        assert_eq!(bearer_token(b"Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b""), None);
        assert_eq!(bearer_token("Bé".as_bytes()), None);
    }

    #[test]
    fn more_than_one_credential_is_malformed() {
        let one = |value: &'static [u8]| AuthorizationHeader::from_values([value]);
        assert_eq!(one(b"Bearer 1|abc").bearer_token(), Ok(&b"1|abc"[..]));
        assert_eq!(
            AuthorizationHeader::from_values([&b"Bearer 1|abc"[..], b"Bearer 2|def"])
                .bearer_token(),
            Err(DenyReason::MalformedToken)
        );
        for joined in [
            &b"Bearer 1|abc,Bearer 2|def"[..],
            b"Bearer 1|abc, junk",
            b"Bearer 1|abc,",
            b"Basic dXNlcg==, Bearer 1|abc",
        ] {
            assert_eq!(one(joined).bearer_token(), Err(DenyReason::MalformedToken));
        }
        assert_eq!(
            AuthorizationHeader::Absent.bearer_token(),
            Err(DenyReason::MissingToken)
        );
        assert_eq!(
            one(b"Basic dXNlcg==").bearer_token(),
            Err(DenyReason::MissingToken)
        );
    }
}
