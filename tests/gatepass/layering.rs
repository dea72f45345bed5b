//! The layering of `src/`, read from the code itself: every `crate::`
//! path in a module's files is an import of another module. The module map
//! in `src/lib.rs` lists the modules from the ground up; an import may only
//! point at a module listed above the importer, so there is no cycle, and
//! the pure layers at the bottom use nothing that does I/O.
//!
//! `cargo test --test gatepass layering -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that decide without touching the world.
const PURE: [&str; 4] = ["token", "duration", "model", "decision"];

/// Crates and std modules that do I/O or run tasks; none may appear in a
/// pure module.
const IO: [&str; 12] = [
    "tokio",
    "sqlx",
    "redis",
    "bb8",
    "actix_web",
    "tonic",
    "std::fs",
    "std::net::Tcp",
    "std::io",
    "std::process",
    "std::thread",
    "tracing",
];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The module map of `src/lib.rs`: lines `//! - [`name`] — …`, in order.
fn module_map() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! - [`"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

/// The top-level module each `.rs` file under `src/` belongs to.
fn module_files() -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let mut pending = vec![src()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(src()).unwrap();
            let first = relative.components().next().unwrap();
            let module = Path::new(first.as_os_str())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !matches!(module.as_str(), "lib" | "main") {
                files.push((module, path));
            }
        }
    }
    files.sort();
    files
}

/// Code without comments, so a doc link is not an import.
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module named after `crate::`, including inside `crate::{a, b::c}`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            modules.extend(group.split(',').filter_map(first_name));
        } else if let Some(name) = first_name(rest) {
            modules.insert(name);
        }
    }
    modules
}

fn first_name(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn graph() -> Graph {
    let mut graph = Graph::new();
    for (module, path) in module_files() {
        let imports = graph.entry(module.clone()).or_default();
        for imported in crate_paths(&code_of(&path)) {
            if imported != module {
                imports.insert(imported);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_module_map_lists_every_module_once() {
    let map = module_map();
    let listed: BTreeSet<_> = map.iter().cloned().collect();
    assert_eq!(listed.len(), map.len(), "a module listed twice: {map:?}");
    let found: BTreeSet<_> = graph().into_keys().collect();
    assert_eq!(listed, found, "src/lib.rs's module map and src/ disagree");
}

#[test]
fn imports_point_down_the_module_map_and_form_no_cycle() {
    let graph = graph();
    for (module, imports) in &graph {
        println!(
            "{module} -> {}",
            Vec::from_iter(imports.iter().cloned()).join(", ")
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
    let map = module_map();
    let rank = |module: &str| map.iter().position(|m| m == module);
    let upward: Vec<String> = graph
        .iter()
        .flat_map(|(module, imports)| imports.iter().map(move |i| (module, i)))
        .filter(|(module, imported)| rank(imported) >= rank(module))
        .map(|(module, imported)| format!("{module} -> {imported}"))
        .collect();
    assert!(
        upward.is_empty(),
        "imports of modules not listed above the importer in src/lib.rs: {upward:?}"
    );
}

#[test]
fn pure_layers_import_only_pure_layers_and_do_no_io() {
    let graph = graph();
    for module in PURE {
        let impure: Vec<_> = graph[module]
            .iter()
            .filter(|imported| !PURE.contains(&imported.as_str()))
            .collect();
        assert!(impure.is_empty(), "{module} imports {impure:?}");
    }
    for (module, path) in module_files() {
        if !PURE.contains(&module.as_str()) {
            continue;
        }
        let code = code_of(&path);
        for io in IO {
            let used = code
                .match_indices(io)
                .any(|(at, _)| !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
            assert!(!used, "{} (pure) uses {io}", path.display());
        }
    }
}

#[test]
fn the_reader_finds_imports_in_every_form() {
    let code = "use crate::{a::X, b};\nfn f() { crate::c::g(); }\nuse crate::d;";
    let found: Vec<_> = crate_paths(code).into_iter().collect();
    assert_eq!(found, ["a", "b", "c", "d"]);
    let mut cyclic = Graph::new();
    cyclic.insert("x".into(), BTreeSet::from(["y".into()]));
    cyclic.insert("y".into(), BTreeSet::from(["x".into()]));
    assert_eq!(find_cycle(&cyclic).unwrap(), ["x", "y", "x"]);
}
