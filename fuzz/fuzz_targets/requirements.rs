#![no_main]
//! Requirement headers and abilities (README "Decision": `*` grants
//! everything, `p:*` everything under `p:`; `require_all` needs every
//! ability, `require_any` one per group; requirements from different
//! sources add up, a client can only add to them). Input is arbitrary
//! bytes read with `String::from_utf8_lossy`, as the HTTP adapter reads
//! `X-Gatepass-Require-*`.
//! - `parse_ability_list`, `Requirements::{require_all, require_any,
//!   merged, satisfied_by}` and `Abilities::new` never panic;
//! - `satisfied_by` agrees with a reference written from the README, and
//!   so does `Abilities::grants` name by name;
//! - adding a requirement never turns "not satisfied" into "satisfied";
//!   holding more abilities never turns "satisfied" into "not satisfied";
//! - `*` satisfies every requirement;
//! - `merged(a, b)` is satisfied exactly when `a` and `b` both are;
//! - the abilities header value is the names sorted bytewise, joined by `,`.
//!
//! Input lines: the held abilities, then requirements (`+` a
//! `require_any` group, anything else a `require_all` list), `--`
//! switching from the first set to the second, `^` extra held abilities.

use gatepass::model::parse_ability_list;
use gatepass::model::{Abilities, Ability, Requirements};
use gatepass_fuzz::reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        gatepass_fuzz::seeds::write_if_asked("requirements");
    },
    |data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let mut lines = text.split('\n');
        let held_line = lines.next().unwrap_or("");
        let held = match parse_ability_list(held_line) {
            Ok(list) => Abilities::new(list),
            Err(_) => Abilities::from_stored(held_line.split(',').map(str::to_owned).collect()),
        };
        check_header_value(&held);
        let held_names: Vec<&str> = held.iter().map(Ability::as_str).collect();
        let star = Abilities::new(vec![Ability::parse("*").expect("* is an ability")]);

        let mut sets = [Requirements::default(), Requirements::default()];
        let mut references = [reference::Requirements::default(), reference::Requirements::default()];
        let mut current = 0;
        let mut extra: Vec<Ability> = Vec::new();
        let mut satisfied = [true, true];
        for line in lines {
            if line == "--" {
                current = 1;
                continue;
            }
            if let Some(names) = line.strip_prefix('^') {
                extra.extend(parse_ability_list(names).unwrap_or_default());
                continue;
            }
            let (requirements, model) = (&mut sets[current], &mut references[current]);
            match line.strip_prefix('+') {
                Some(group) => {
                    requirements.require_any(group);
                    model.require_any(group);
                }
                None => {
                    requirements.require_all(line);
                    model.require_all(line);
                }
            }
            let now = requirements.satisfied_by(&held);
            assert_eq!(
                now,
                model.satisfied_by(&held_names),
                "held {held_names:?}, requirements {model:?}"
            );
            assert!(
                !now || satisfied[current],
                "adding {line:?} turned unsatisfied requirements into satisfied ones: held {held_names:?}, {model:?}"
            );
            satisfied[current] = now;
            assert!(requirements.satisfied_by(&star), "* does not satisfy {model:?}");
            assert_eq!(
                requirements.is_empty(),
                model.all.is_empty() && model.any.is_empty(),
                "{model:?}"
            );
        }

        let [a, b] = &sets;
        let merged = a.merged(b);
        let more: Vec<Ability> = held.iter().cloned().chain(extra).collect();
        let more = Abilities::new(more);
        for abilities in [&held, &star, &more] {
            assert_eq!(
                merged.satisfied_by(abilities),
                a.satisfied_by(abilities) && b.satisfied_by(abilities),
                "merged: held {:?}, {references:?}",
                abilities.header_value()
            );
        }
        for requirements in [a, b, &merged] {
            assert!(
                !requirements.satisfied_by(&held) || requirements.satisfied_by(&more),
                "more abilities satisfy less: {:?} vs {:?}, {references:?}",
                held.header_value(),
                more.header_value()
            );
        }
        assert!(merged.satisfied_by(&star));

        // Name by name.
        for model in &references {
            let required = model.all.iter().chain(model.any.iter().flatten());
            for name in required.take(64) {
                for held_name in held_names.iter().take(16) {
                    let one = Abilities::new(vec![Ability::parse(held_name).expect("held ability")]);
                    assert_eq!(
                        one.grants(name),
                        reference::grants(held_name, name),
                        "{held_name:?} grants {name:?}"
                    );
                }
            }
        }
    }
);

fn check_header_value(held: &Abilities) {
    let mut names: Vec<&str> = held.iter().map(Ability::as_str).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(held.header_value(), names.join(","));
    for name in &names {
        assert!(
            !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic() && b != b','),
            "invalid ability held: {name:?}"
        );
    }
}
