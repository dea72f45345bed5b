//! Route policy (SPEC §5): ordered rules from a TOML file that map host,
//! method and path to required abilities. The first matching rule wins;
//! `[default]` applies when none does. Route requirements are added to the
//! proxy's, never replace them.
//!
//! ```toml
//! [[rule]]
//! host = "api.internal"          # exact, or "*.internal"; optional
//! methods = ["GET", "HEAD"]      # optional
//! path = "/orders/*/lines"       # glob: * within a segment, ** across; or
//! # path_prefix = "/orders/"
//! require_all = ["orders:read"]
//! require_any = []
//!
//! [default]
//! require_all = []
//! ```
//!
//! Paths are matched after percent-decoding, collapsing `//` and resolving
//! `.` and `..`, so `/public/..%2Fadmin` is matched as `/admin`.

mod path;

use std::borrow::Cow;

use serde::Deserialize;

use crate::model::{Ability, Requirements};
pub use path::{Glob, normalize_path, readable};

/// Compiled rules.
#[derive(Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    default: Requirements,
}

#[derive(Debug)]
struct Rule {
    host: Option<HostPattern>,
    methods: Option<Vec<String>>,
    path: PathPattern,
    requirements: Requirements,
}

#[derive(Debug)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com`.
    Suffix(String),
}

#[derive(Debug)]
enum PathPattern {
    Any,
    Prefix(String),
    Glob(Glob),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleFile>>,
    #[serde(default)]
    default: Option<RequirementsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    host: Option<String>,
    methods: Option<Vec<String>>,
    path: Option<String>,
    path_prefix: Option<String>,
    #[serde(default)]
    require_all: Vec<String>,
    #[serde(default)]
    require_any: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequirementsFile {
    #[serde(default)]
    require_all: Vec<String>,
    #[serde(default)]
    require_any: Vec<String>,
}

impl Policy {
    /// Parses and validates a policy; errors name the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        let rules = file
            .rule
            .into_iter()
            .enumerate()
            .map(|(index, spanned)| {
                let line = line_of(text, spanned.span().start);
                Rule::compile(spanned.into_inner())
                    .map_err(|message| format!("line {line}: rule {}: {message}", index + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default = match file.default {
            Some(default) => requirements(&default.require_all, &default.require_any)
                .map_err(|message| format!("[default]: {message}"))?,
            None => Requirements::default(),
        };
        Ok(Self { rules, default })
    }

    /// What the first matching rule (or the default) requires. Method,
    /// host and path are the bytes the proxy sent, compared as bytes: none
    /// of them has to be readable text for a rule to apply. When one holds
    /// bytes that are not text (invalid UTF-8, control characters), an
    /// upstream may also drop them, so the request is matched both ways
    /// and must meet both answers.
    pub fn requirements_for(
        &self,
        method: &[u8],
        host: &[u8],
        path: &[u8],
    ) -> Cow<'_, Requirements> {
        let as_sent = self.first_match(method, host, path);
        let (method_text, host_text, path_text) =
            (readable(method), readable(host), readable(path));
        if method_text.is_none() && host_text.is_none() && path_text.is_none() {
            return Cow::Borrowed(as_sent);
        }
        let as_text = self.first_match(
            method_text.as_deref().unwrap_or(method),
            host_text.as_deref().unwrap_or(host),
            path_text.as_deref().unwrap_or(path),
        );
        if std::ptr::eq(as_sent, as_text) {
            Cow::Borrowed(as_sent)
        } else {
            Cow::Owned(as_sent.merged(as_text))
        }
    }

    fn first_match(&self, method: &[u8], host: &[u8], path: &[u8]) -> &Requirements {
        let path = normalize_path(path);
        let host = host_without_port(host);
        self.rules
            .iter()
            .find(|rule| rule.matches(method, host, &path))
            .map_or(&self.default, |rule| &rule.requirements)
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

impl Rule {
    fn compile(file: RuleFile) -> Result<Self, String> {
        let path = match (file.path, file.path_prefix) {
            (Some(_), Some(_)) => return Err("set path or path_prefix, not both".into()),
            (Some(glob), None) if glob.starts_with('/') => PathPattern::Glob(Glob::new(&glob)),
            (None, Some(prefix)) if prefix.starts_with('/') => PathPattern::Prefix(prefix),
            (Some(_), None) | (None, Some(_)) => return Err("paths start with '/'".into()),
            (None, None) => PathPattern::Any,
        };
        let host = file
            .host
            .map(|host| {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix('*') {
                    Some(suffix) if suffix.starts_with('.') && !suffix.contains('*') => {
                        Ok(HostPattern::Suffix(suffix.to_owned()))
                    }
                    Some(_) => Err(format!("host {host:?}: only a leading \"*.\" is allowed")),
                    None if host.is_empty() || host.contains('*') => {
                        Err(format!("host {host:?} is not a host name"))
                    }
                    None => Ok(HostPattern::Exact(host)),
                }
            })
            .transpose()?;
        let methods = file
            .methods
            .map(|methods| {
                methods
                    .into_iter()
                    .map(|method| {
                        if !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()) {
                            Ok(method.to_ascii_uppercase())
                        } else {
                            Err(format!("method {method:?} is not an HTTP method"))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if host.is_none() && methods.is_none() && matches!(path, PathPattern::Any) {
            return Err("matches every request; use [default] for that".into());
        }
        Ok(Self {
            host,
            methods,
            path,
            requirements: requirements(&file.require_all, &file.require_any)?,
        })
    }

    fn matches(&self, method: &[u8], host: &[u8], path: &[u8]) -> bool {
        let host_matches = match &self.host {
            None => true,
            Some(HostPattern::Exact(exact)) => host.eq_ignore_ascii_case(exact.as_bytes()),
            Some(HostPattern::Suffix(suffix)) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
        };
        let method_matches = self.methods.as_ref().is_none_or(|methods| {
            methods
                .iter()
                .any(|m| m.as_bytes().eq_ignore_ascii_case(method))
        });
        let path_matches = match &self.path {
            PathPattern::Any => true,
            PathPattern::Prefix(prefix) => path.starts_with(prefix.as_bytes()),
            PathPattern::Glob(glob) => glob.matches(path),
        };
        host_matches && method_matches && path_matches
    }
}

fn requirements(all: &[String], any: &[String]) -> Result<Requirements, String> {
    for name in all.iter().chain(any) {
        Ability::parse(name).map_err(|e| e.to_string())?;
    }
    let mut requirements = Requirements::default();
    requirements.require_all(&all.join(","));
    requirements.require_any(&any.join(","));
    Ok(requirements)
}

fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        // [::1]:8080
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('|') && *line != "^")
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Abilities, parse_ability_list};

    const POLICY: &str = r#"
[[rule]]
host = "*.internal"
methods = ["delete"]
path_prefix = "/orders/"
require_all = ["orders:delete"]

[[rule]]
path = "/orders/*/lines"
require_all = ["orders:read", "lines:read"]

[[rule]]
path_prefix = "/orders/"
require_any = ["orders:read", "orders:*"]

[[rule]]
path = "/admin/**"
require_all = ["admin"]

[default]
require_all = ["basic"]
"#;

    fn satisfied(
        policy: &Policy,
        abilities: &str,
        method: &str,
        host: &str,
        path: impl AsRef<[u8]>,
    ) -> bool {
        let held = Abilities::new(parse_ability_list(abilities).unwrap());
        policy
            .requirements_for(method.as_bytes(), host.as_bytes(), path.as_ref())
            .satisfied_by(&held)
    }

    #[test]
    fn first_matching_rule_wins() {
        let policy = Policy::parse(POLICY).unwrap();
        assert!(satisfied(
            &policy,
            "orders:delete",
            "DELETE",
            "api.internal:8080",
            "/orders/7"
        ));
        assert!(!satisfied(
            &policy,
            "orders:read",
            "DELETE",
            "api.internal",
            "/orders/7"
        ));
        // Not under *.internal: the third rule applies.
        assert!(satisfied(
            &policy,
            "orders:read",
            "DELETE",
            "example.com",
            "/orders/7"
        ));
        assert!(satisfied(
            &policy,
            "orders:read,lines:read",
            "GET",
            "x",
            "/orders/7/lines"
        ));
        assert!(!satisfied(
            &policy,
            "orders:read",
            "GET",
            "x",
            "/orders/7/lines"
        ));
        assert!(satisfied(
            &policy,
            "orders:read",
            "GET",
            "x",
            "/orders/7/lines/2"
        ));
    }

    #[test]
    fn default_applies_when_nothing_matches() {
        let policy = Policy::parse(POLICY).unwrap();
        assert!(!satisfied(&policy, "", "GET", "x", "/health"));
        assert!(satisfied(&policy, "basic", "GET", "x", "/health"));
        let empty = Policy::parse("").unwrap();
        assert!(satisfied(&empty, "", "GET", "x", "/anything"));
    }

    #[test]
    fn encoded_dot_segments_cannot_leave_a_rule() {
        let policy = Policy::parse(POLICY).unwrap();
        assert!(!satisfied(
            &policy,
            "basic",
            "GET",
            "x",
            "/public/..%2Fadmin/users"
        ));
    }

    #[test]
    fn unreadable_bytes_never_take_a_path_out_of_its_rule() {
        let policy = Policy::parse(POLICY).unwrap();
        let admin_paths: [&[u8]; 6] = [
            "/admin/café".as_bytes(),
            b"/admin/caf%C3%A9",
            b"/admin/\xff\xfe",
            b"/admin/%ff",
            b"/x/\xff/../../admin/users",
            b"//admin/\x00",
        ];
        for path in admin_paths {
            assert!(!satisfied(&policy, "basic", "GET", "x", path), "{path:?}");
            assert!(
                satisfied(&policy, "basic,admin", "GET", "x", path),
                "{path:?}"
            );
        }
        // An upstream that drops the byte reads /admin/x: admin is needed.
        assert!(!satisfied(&policy, "basic", "GET", "x", b"/admin\xff/x"));
        assert!(satisfied(
            &policy,
            "basic,admin",
            "GET",
            "x",
            b"/admin\xff/x"
        ));
        assert!(!satisfied(&policy, "basic", "GET", "x", b"/adm\x7fin/x"));
        let unicode =
            Policy::parse("[[rule]]\npath_prefix = \"/café/\"\nrequire_all = [\"c\"]\n").unwrap();
        assert!(!satisfied(
            &unicode,
            "",
            "GET",
            "x",
            "/café/menu".as_bytes()
        ));
        assert!(!satisfied(&unicode, "", "GET", "x", b"/caf%c3%a9/menu"));
    }

    #[test]
    fn unreadable_hosts_and_methods_are_compared_as_bytes() {
        let policy = Policy::parse(POLICY).unwrap();
        let read = Abilities::new(parse_ability_list("orders:read").unwrap());
        let both = Abilities::new(parse_ability_list("orders:read,orders:delete").unwrap());
        // As sent, not *.internal (the /orders/ rule); without the byte,
        // the DELETE rule: both apply.
        for (method, host) in [
            (&b"DELETE"[..], &b"api.internal\xff"[..]),
            (b"DEL\xffETE", b"api.internal"),
        ] {
            let requirements = policy.requirements_for(method, host, b"/orders/7");
            assert!(!requirements.satisfied_by(&read), "{method:?} {host:?}");
            assert!(requirements.satisfied_by(&both), "{method:?} {host:?}");
        }
    }

    #[test]
    fn bad_policies_name_the_line() {
        let cases = [
            ("[[rule]]\npath = \"/a\"\npath_prefix = \"/b\"\n", "line 1"),
            ("\n\n[[rule]]\nrequire_all = [\"a\"]\n", "line 3"),
            (
                "[[rule]]\npath = \"/a\"\nrequire_all = [\"a b\"]\n",
                "invalid ability",
            ),
            ("[[rule]]\npathh = \"/a\"\n", "line 2"),
            ("[[rule]]\nhost = \"a*b\"\n", "host"),
            ("[[rule]]\nmethods = [\"G T\"]\n", "method"),
            ("[[rule]]\npath = \"orders\"\n", "start with '/'"),
            ("[[rule\n", "line 1"),
        ];
        for (text, expected) in cases {
            let error = Policy::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port(b"api.internal:8080"), b"api.internal");
        assert_eq!(host_without_port(b"[::1]:8080"), b"[::1]");
        assert_eq!(host_without_port(b"api.internal"), b"api.internal");
    }
}
