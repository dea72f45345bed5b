//! The decision (SPEC §3): one pure function from a transport-neutral
//! request to `Allow` or `Deny`, with what it reads from requests: bearer
//! credentials, client addresses behind proxies, route policies. Every
//! surface (gRPC, HTTP, the `check` command) translates into
//! [`CheckRequest`] and out of [`Decision`]; none decides anything itself.
//! Imports only the token format and the model.

pub mod client_ip;
pub mod policy;

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::{AbilityMatching, Requirements, TokenKind, TokenRecord};
use crate::token::PresentedToken;

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
    pub abilities: AbilityMatching,
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
    } else if !context
        .requirements
        .satisfied_under(&record.abilities, context.abilities)
        || !context
            .route_requirements
            .is_none_or(|route| route.satisfied_under(&record.abilities, context.abilities))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Abilities, NetList, ServiceRecord, parse_ability_list};
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
            last_use: Default::default(),
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
            abilities: AbilityMatching::Wildcards,
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
            abilities: AbilityMatching::Wildcards,
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
            abilities: AbilityMatching::Wildcards,
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
            abilities: AbilityMatching::Wildcards,
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
