//! Abilities a token holds and the requirements a route places on them.

use std::fmt;

/// Longest ability name accepted.
const MAX_ABILITY_LEN: usize = 128;

/// How held abilities meet required ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AbilityMatching {
    /// `*` grants everything, `prefix:*` everything under `prefix:`, any
    /// other ability itself (gatepass's own schema).
    #[default]
    Wildcards,
    /// Laravel Sanctum's `can()`: `*` grants everything, any other ability
    /// (`orders:*` included) only itself.
    Exact,
}

/// One ability name, such as `inventory:read`, `inventory:*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ability(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ability {0:?}: use 1 to 128 printable ASCII characters without commas or spaces")]
pub struct InvalidAbility(pub String);

impl Ability {
    pub fn parse(name: &str) -> Result<Self, InvalidAbility> {
        let valid = !name.is_empty()
            && name.len() <= MAX_ABILITY_LEN
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b',');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidAbility(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*` grants everything; with [`AbilityMatching::Wildcards`],
    /// `prefix:*` grants every ability under `prefix:`.
    fn grants(&self, required: &str, matching: AbilityMatching) -> bool {
        match (self.0.strip_suffix('*'), matching) {
            (Some(""), _) => true,
            (Some(prefix), AbilityMatching::Wildcards) if prefix.ends_with(':') => {
                required.starts_with(prefix) || required == self.0
            }
            _ => self.0 == required,
        }
    }
}

impl fmt::Display for Ability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a comma-separated list such as `--abilities a,b`. Blank entries
/// are ignored; duplicates are dropped.
pub fn parse_ability_list(list: &str) -> Result<Vec<Ability>, InvalidAbility> {
    let mut abilities = list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(Ability::parse)
        .collect::<Result<Vec<_>, _>>()?;
    abilities.sort();
    abilities.dedup();
    Ok(abilities)
}

/// The abilities a token holds, kept sorted bytewise, with the header value
/// rendered once so the allow path does not rebuild it per request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Abilities {
    sorted: Vec<Ability>,
    header_value: String,
}

impl Abilities {
    pub fn new(mut abilities: Vec<Ability>) -> Self {
        abilities.sort();
        abilities.dedup();
        let header_value = abilities
            .iter()
            .map(Ability::as_str)
            .collect::<Vec<_>>()
            .join(",");
        Self {
            sorted: abilities,
            header_value,
        }
    }

    /// Builds from stored strings, skipping any a plain-SQL writer made
    /// invalid rather than failing the whole token.
    pub fn from_stored(names: Vec<String>) -> Self {
        Self::new(
            names
                .iter()
                .filter_map(|name| Ability::parse(name).ok())
                .collect(),
        )
    }

    pub fn grants(&self, required: &str) -> bool {
        self.grants_under(required, AbilityMatching::Wildcards)
    }

    pub fn grants_under(&self, required: &str, matching: AbilityMatching) -> bool {
        self.sorted
            .iter()
            .any(|held| held.grants(required, matching))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Ability> {
        self.sorted.iter()
    }

    /// Sorted bytewise and joined by `,` with no spaces (SPEC §4).
    pub fn header_value(&self) -> &str {
        &self.header_value
    }
}

/// What a request must hold. Requirements from the route policy and from the
/// proxy are merged, never replaced, so a client can only add to them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirements {
    all: Vec<String>,
    any_groups: Vec<Vec<String>>,
}

impl Requirements {
    /// Adds abilities that must all be held (Sanctum's `abilities`).
    pub fn require_all(&mut self, list: &str) -> &mut Self {
        self.all.extend(split_list(list));
        self
    }

    /// Adds a group of which at least one must be held (Sanctum's
    /// `ability`). Each group added is checked on its own.
    pub fn require_any(&mut self, list: &str) -> &mut Self {
        let group: Vec<String> = split_list(list).collect();
        if !group.is_empty() {
            self.any_groups.push(group);
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.any_groups.is_empty()
    }

    /// Both sets of requirements at once.
    pub fn merged(&self, other: &Requirements) -> Requirements {
        let mut merged = self.clone();
        merged.all.extend(other.all.iter().cloned());
        merged.any_groups.extend(other.any_groups.iter().cloned());
        merged
    }

    pub fn satisfied_by(&self, held: &Abilities) -> bool {
        self.satisfied_under(held, AbilityMatching::Wildcards)
    }

    pub fn satisfied_under(&self, held: &Abilities, matching: AbilityMatching) -> bool {
        let grants = |required: &String| held.grants_under(required, matching);
        self.all.iter().all(grants) && self.any_groups.iter().all(|group| group.iter().any(grants))
    }
}

fn split_list(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(list: &str) -> Abilities {
        Abilities::new(parse_ability_list(list).unwrap())
    }

    #[test]
    fn star_grants_every_ability() {
        assert!(held("*").grants("inventory:read"));
        assert!(held("*").grants("anything"));
    }

    #[test]
    fn prefix_star_grants_abilities_under_the_prefix_only() {
        let abilities = held("inventory:*");
        assert!(abilities.grants("inventory:read"));
        assert!(abilities.grants("inventory:write:bulk"));
        assert!(abilities.grants("inventory:*"));
        assert!(!abilities.grants("inventory"));
        assert!(!abilities.grants("inventoryx:read"));
        assert!(!abilities.grants("billing:read"));
    }

    #[test]
    fn star_inside_a_name_is_literal() {
        let abilities = held("a*b");
        assert!(abilities.grants("a*b"));
        assert!(!abilities.grants("axb"));
        assert!(!held("inventory*").grants("inventory:read"));
    }

    #[test]
    fn exact_matching_reads_prefix_stars_as_literals() {
        let abilities = held("orders:*,billing:read");
        let exact = AbilityMatching::Exact;
        assert!(!abilities.grants_under("orders:read", exact));
        assert!(abilities.grants_under("orders:*", exact));
        assert!(abilities.grants_under("billing:read", exact));
        assert!(abilities.grants_under("orders:read", AbilityMatching::Wildcards));
        assert!(held("*").grants_under("anything:at:all", exact));
        let mut requirements = Requirements::default();
        requirements.require_any("orders:read,billing:read");
        assert!(requirements.satisfied_under(&abilities, exact));
        requirements.require_all("orders:write");
        assert!(!requirements.satisfied_under(&abilities, exact));
    }

    #[test]
    fn exact_ability_grants_only_itself() {
        let abilities = held("orders:read");
        assert!(abilities.grants("orders:read"));
        assert!(!abilities.grants("orders:write"));
        assert!(!abilities.grants("orders:readx"));
    }

    #[test]
    fn require_all_needs_every_ability() {
        let mut requirements = Requirements::default();
        requirements.require_all("orders:read, orders:write");
        assert!(requirements.satisfied_by(&held("orders:read,orders:write")));
        assert!(requirements.satisfied_by(&held("orders:*")));
        assert!(!requirements.satisfied_by(&held("orders:read")));
    }

    #[test]
    fn require_any_needs_one_per_group() {
        let mut requirements = Requirements::default();
        requirements.require_any("a,b").require_any("c");
        assert!(requirements.satisfied_by(&held("b,c")));
        assert!(!requirements.satisfied_by(&held("a,b")));
        assert!(!requirements.satisfied_by(&held("c")));
    }

    #[test]
    fn empty_requirements_are_satisfied_by_any_token() {
        let mut requirements = Requirements::default();
        requirements.require_all(" , ").require_any("");
        assert!(requirements.is_empty());
        assert!(requirements.satisfied_by(&held("")));
    }

    #[test]
    fn header_value_is_sorted_bytewise_without_spaces() {
        let abilities = held("orders:read, Zeta,alpha,orders:read,*");
        assert_eq!(abilities.header_value(), "*,Zeta,alpha,orders:read");
    }

    #[test]
    fn invalid_ability_names_are_rejected() {
        for bad in ["with space", "é", &"x".repeat(129)] {
            assert!(Ability::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_ability_list("a,,b").is_ok());
    }
}
