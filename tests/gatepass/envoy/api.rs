//! Envoy's v3 API without an Envoy binary: the `.proto` files envoy-types
//! ships, compiled at test time with protox, read Envoy YAML the way Envoy
//! does (YAML → JSON → proto3 JSON mapping, unknown fields rejected, `@type`
//! payloads resolved through the same descriptors), then the
//! protoc-gen-validate (PGV) rules Envoy enforces on load are checked.
//! Deprecated fields and enum values are refused too, which is stricter than
//! Envoy (it warns and counts `deprecated_feature_use`): shipped files should
//! not need them.
//!
//! What this catches: misspelt or misplaced fields (also inside
//! `typed_config` and other `Any` payloads), wrong value types, unknown enum
//! names, unknown `@type`s, duplicate YAML keys, deprecated fields, and
//! violations of the PGV rules below. What it does not: semantics only
//! Envoy's C++ code checks (a route naming a missing cluster, a filter name
//! that is not registered, the router being last); the tests assert those
//! they rely on through the generated types.
//!
//! PGV rules checked: `message.required`, required oneofs, numeric
//! `const`/`lt`/`lte`/`gt`/`gte`/`in`/`not_in`, `duration`/`any.required` and
//! bounds, string and bytes lengths, `prefix`/`suffix`/`contains`/`in`/
//! `not_in`/`pattern`, the HTTP header name and value well-known regexes,
//! `enum.defined_only`, repeated `min_items`/`max_items`/`items` and map
//! `min_pairs`/`max_pairs`/`keys`/`values`. Other well-known string formats
//! (hostname, ip, uri, …) are not checked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::LazyLock;

use prost_reflect::prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind,
    MapKey, MessageDescriptor, ReflectMessage, Value,
};

/// The files compiled into the pool. Every message a configuration names in
/// an `@type` must be in one of them (or their imports).
const ENTRY_FILES: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
];

/// Include roots below envoy-types' `proto/` directory.
const INCLUDE_ROOTS: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

const BOOTSTRAP: &str = "envoy.config.bootstrap.v3.Bootstrap";

pub struct EnvoyApi {
    pool: DescriptorPool,
    field_rules: ExtensionDescriptor,
    oneof_required: ExtensionDescriptor,
    message_disabled: ExtensionDescriptor,
    message_ignored: ExtensionDescriptor,
}

/// Compiled once per test process.
pub fn envoy_api() -> &'static EnvoyApi {
    static API: LazyLock<EnvoyApi> = LazyLock::new(EnvoyApi::compile);
    &API
}

impl EnvoyApi {
    fn compile() -> Self {
        let root = envoy_types_proto_dir();
        let includes: Vec<PathBuf> = INCLUDE_ROOTS
            .iter()
            .map(|dir| root.join(dir))
            .filter(|dir| dir.is_dir())
            .collect();
        let mut compiler = protox::Compiler::new(&includes).expect("include paths are readable");
        compiler.include_imports(true);
        compiler
            .open_files(ENTRY_FILES)
            .unwrap_or_else(|error| panic!("Envoy's protos compile: {error}"));
        let pool = compiler.descriptor_pool();
        let extension = |name: &str| {
            pool.get_extension_by_name(name)
                .unwrap_or_else(|| panic!("{name} is defined by validate.proto"))
        };
        Self {
            field_rules: extension("validate.rules"),
            oneof_required: extension("validate.required"),
            message_disabled: extension("validate.disabled"),
            message_ignored: extension("validate.ignored"),
            pool,
        }
    }

    pub fn message(&self, full_name: &str) -> MessageDescriptor {
        self.pool
            .get_message_by_name(full_name)
            .unwrap_or_else(|| panic!("{full_name} is in the compiled protos"))
    }

    /// A static bootstrap as Envoy would load it, or every reason it would not.
    pub fn load_bootstrap(&self, yaml: &str) -> Result<DynamicMessage, String> {
        self.load(BOOTSTRAP, yaml)
    }

    /// `yaml` as the message `full_name`, checked like a bootstrap.
    pub fn load(&self, full_name: &str, yaml: &str) -> Result<DynamicMessage, String> {
        let json = yaml_to_json(yaml)?;
        let options = DeserializeOptions::new().deny_unknown_fields(true);
        let descriptor = self.message(full_name);
        let message = DynamicMessage::deserialize_with_options(descriptor.clone(), json, &options)
            .map_err(|error| {
                // JSON values carry no position: read the YAML text directly
                // once more for an error that says where.
                let located = serde_yaml::Deserializer::from_str(yaml);
                match DynamicMessage::deserialize_with_options(descriptor, located, &options) {
                    Err(located) => format!("not a valid {full_name}: {located}"),
                    Ok(_) => format!("not a valid {full_name}: {error}"),
                }
            })?;
        let mut problems = Vec::new();
        self.check_message(&message, "", &mut problems);
        if problems.is_empty() {
            Ok(message)
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The same configuration as envoy-types' generated type.
    pub fn typed<T: Message + Default>(message: &DynamicMessage) -> T {
        T::decode(message.encode_to_vec().as_slice())
            .expect("generated types read what the protos define")
    }

    fn check_message(&self, message: &DynamicMessage, path: &str, problems: &mut Vec<String>) {
        let descriptor = message.descriptor();
        if descriptor.full_name() == "google.protobuf.Any" {
            self.check_any(message, path, problems);
            return;
        }
        let options = descriptor.options();
        if flag(&options, &self.message_disabled) || flag(&options, &self.message_ignored) {
            return;
        }
        for oneof in descriptor.oneofs().filter(|oneof| !oneof.is_synthetic()) {
            if flag(&oneof.options(), &self.oneof_required)
                && !oneof.fields().any(|field| message.has_field(&field))
            {
                let names: Vec<_> = oneof
                    .fields()
                    .map(|field| field.name().to_owned())
                    .collect();
                problems.push(format!(
                    "{}: one of {} is required",
                    display(path, descriptor.full_name()),
                    names.join(", ")
                ));
            }
        }
        for field in descriptor.fields() {
            let present = message.has_field(&field);
            // Oneof members (and proto3 `optional` fields) are validated only when set.
            if field.containing_oneof().is_some() && !present {
                continue;
            }
            let field_path = join(path, field.name());
            let value = message.get_field(&field);
            if present && is_deprecated(&field) {
                problems.push(format!("{field_path}: deprecated field"));
            }
            let rules = field.options();
            let mut skip_nested = false;
            if rules.has_extension(&self.field_rules)
                && let Value::Message(rules) = rules.get_extension(&self.field_rules).as_ref()
            {
                skip_nested =
                    self.check_field(&field, present, &value, rules, &field_path, problems);
            }
            if present && !skip_nested {
                self.check_nested(&field.kind(), &value, &field_path, problems);
            }
        }
    }

    /// Decodes an `Any` through the pool and checks its payload.
    fn check_any(&self, any: &DynamicMessage, path: &str, problems: &mut Vec<String>) {
        let type_url = string_field(any, "type_url");
        let name = type_url.rsplit('/').next().unwrap_or_default();
        let Some(descriptor) = self.pool.get_message_by_name(name) else {
            problems.push(format!("{path}: unknown @type {type_url:?}"));
            return;
        };
        let bytes = match any.get_field_by_name("value").as_deref() {
            Some(Value::Bytes(bytes)) => bytes.clone(),
            _ => Default::default(),
        };
        match DynamicMessage::decode(descriptor, bytes) {
            Ok(inner) => self.check_message(&inner, &format!("{path}<{name}>"), problems),
            Err(error) => problems.push(format!("{path}: undecodable {name}: {error}")),
        }
    }

    fn check_nested(&self, kind: &Kind, value: &Value, path: &str, problems: &mut Vec<String>) {
        match value {
            Value::Message(message) => self.check_message(message, path, problems),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_nested(kind, item, &format!("{path}[{i}]"), problems);
                }
            }
            Value::Map(entries) => {
                let value_kind = match kind {
                    Kind::Message(entry) => entry.map_entry_value_field().kind(),
                    other => other.clone(),
                };
                for (key, item) in entries {
                    self.check_nested(
                        &value_kind,
                        item,
                        &format!("{path}[{}]", map_key(key)),
                        problems,
                    );
                }
            }
            Value::EnumNumber(number) => {
                if let Kind::Enum(enumeration) = kind {
                    let deprecated = enumeration.get_value(*number).is_some_and(|value| {
                        value
                            .enum_value_descriptor_proto()
                            .options
                            .as_ref()
                            .and_then(|options| options.deprecated)
                            .unwrap_or(false)
                    });
                    if deprecated {
                        problems.push(format!("{path}: deprecated enum value {number}"));
                    }
                }
            }
            _ => {}
        }
    }

    /// Applies `rules` (a `validate.FieldRules`) to one field. Returns true
    /// when the rules say not to validate the nested message.
    fn check_field(
        &self,
        field: &FieldDescriptor,
        present: bool,
        value: &Value,
        rules: &DynamicMessage,
        path: &str,
        problems: &mut Vec<String>,
    ) -> bool {
        let mut skip = false;
        if let Some(message_rules) = sub_message(rules, "message") {
            if bool_field(&message_rules, "required") && !present {
                problems.push(format!("{path}: required"));
            }
            skip = bool_field(&message_rules, "skip");
        }
        if field.is_map() {
            if let (Some(map_rules), Value::Map(entries)) = (sub_message(rules, "map"), value) {
                self.check_map(field, entries, &map_rules, path, problems);
            }
        } else if field.is_list() {
            if let (Some(list_rules), Value::List(items)) = (sub_message(rules, "repeated"), value)
            {
                let ignore = bool_field(&list_rules, "ignore_empty") && items.is_empty();
                if !ignore {
                    count_rule(
                        &list_rules,
                        "min_items",
                        "max_items",
                        items.len(),
                        path,
                        problems,
                    );
                    if let Some(item_rules) = sub_message(&list_rules, "items") {
                        for (i, item) in items.iter().enumerate() {
                            let item_path = format!("{path}[{i}]");
                            self.check_value(
                                &field.kind(),
                                true,
                                item,
                                &item_rules,
                                &item_path,
                                problems,
                            );
                        }
                    }
                }
            }
        } else {
            self.check_value(&field.kind(), present, value, rules, path, problems);
        }
        skip
    }

    fn check_map(
        &self,
        field: &FieldDescriptor,
        entries: &HashMap<MapKey, Value>,
        rules: &DynamicMessage,
        path: &str,
        problems: &mut Vec<String>,
    ) {
        if bool_field(rules, "ignore_empty") && entries.is_empty() {
            return;
        }
        count_rule(
            rules,
            "min_pairs",
            "max_pairs",
            entries.len(),
            path,
            problems,
        );
        let Kind::Message(entry) = field.kind() else {
            return;
        };
        let key_rules = sub_message(rules, "keys");
        let value_rules = sub_message(rules, "values");
        for (key, value) in entries {
            let entry_path = format!("{path}[{}]", map_key(key));
            if let Some(key_rules) = &key_rules {
                let key_value = map_key_value(key);
                let kind = entry.map_entry_key_field().kind();
                self.check_value(&kind, true, &key_value, key_rules, &entry_path, problems);
            }
            if let Some(value_rules) = &value_rules {
                let kind = entry.map_entry_value_field().kind();
                self.check_value(&kind, true, value, value_rules, &entry_path, problems);
            }
        }
    }

    /// Rules for one value: a singular field, a list item or a map entry.
    fn check_value(
        &self,
        kind: &Kind,
        present: bool,
        value: &Value,
        rules: &DynamicMessage,
        path: &str,
        problems: &mut Vec<String>,
    ) {
        let Some((rule_kind, typed_rules)) = type_rules(rules) else {
            return;
        };
        match (rule_kind.as_str(), value) {
            ("duration", _) => self.check_duration(present, value, &typed_rules, path, problems),
            ("any", _) => {
                if bool_field(&typed_rules, "required") && !present {
                    problems.push(format!("{path}: required"));
                }
                if let (true, Value::Message(any)) = (present, value) {
                    let type_url = string_field(any, "type_url");
                    let allowed = string_list(&typed_rules, "in");
                    if !allowed.is_empty() && !allowed.contains(&type_url) {
                        problems.push(format!("{path}: @type {type_url} not in {allowed:?}"));
                    }
                }
            }
            ("timestamp", _) => {}
            // Wrapper types (UInt32Value, …) carry scalar rules for their value.
            (_, Value::Message(wrapper)) => {
                let descriptor = wrapper.descriptor();
                if present
                    && descriptor.full_name().starts_with("google.protobuf.")
                    && let Some(field) = descriptor.get_field_by_name("value")
                {
                    let inner = wrapper.get_field(&field);
                    self.check_value(&field.kind(), true, &inner, rules, path, problems);
                }
            }
            ("string", Value::String(text)) => check_string(text, &typed_rules, path, problems),
            ("bytes", Value::Bytes(bytes)) => {
                if !(bool_field(&typed_rules, "ignore_empty") && bytes.is_empty()) {
                    length_rule(
                        &typed_rules,
                        "len",
                        "min_len",
                        "max_len",
                        bytes.len(),
                        "bytes",
                        path,
                        problems,
                    );
                }
            }
            ("enum", Value::EnumNumber(number)) => {
                if let Kind::Enum(enumeration) = kind
                    && bool_field(&typed_rules, "defined_only")
                    && enumeration.get_value(*number).is_none()
                {
                    problems.push(format!(
                        "{path}: {number} is not a defined {}",
                        enumeration.full_name()
                    ));
                }
                check_number(f64::from(*number), &typed_rules, path, problems);
            }
            ("bool", Value::Bool(flag_value)) => {
                if typed_rules.has_field_by_name("const")
                    && bool_field(&typed_rules, "const") != *flag_value
                {
                    problems.push(format!("{path}: must be {}", !flag_value));
                }
            }
            (_, value) => {
                if let Some(number) = as_f64(value) {
                    let ignore = bool_field(&typed_rules, "ignore_empty") && number == 0.0;
                    if !ignore {
                        check_number(number, &typed_rules, path, problems);
                    }
                }
            }
        }
    }

    fn check_duration(
        &self,
        present: bool,
        value: &Value,
        rules: &DynamicMessage,
        path: &str,
        problems: &mut Vec<String>,
    ) {
        if !present {
            if bool_field(rules, "required") {
                problems.push(format!("{path}: required"));
            }
            return;
        }
        let Value::Message(duration) = value else {
            return;
        };
        let seconds = duration_seconds(duration);
        let bound = |name: &str| sub_message(rules, name).map(|bound| duration_seconds(&bound));
        let bounds = Bounds {
            lt: bound("lt"),
            lte: bound("lte"),
            gt: bound("gt"),
            gte: bound("gte"),
        };
        if !bounds.admit(seconds) {
            problems.push(format!("{path}: {seconds}s is out of range {bounds}"));
        }
        if let Some(exact) = bound("const")
            && seconds != exact
        {
            problems.push(format!("{path}: must be {exact}s"));
        }
    }
}

/// The directory of .proto files inside the envoy-types package this crate
/// builds with, found through `cargo metadata` (so CARGO_HOME, vendoring and
/// patches are honoured).
fn envoy_types_proto_dir() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let manifests: Vec<&str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|package| package["name"] == "envoy-types")
        .filter_map(|package| package["manifest_path"].as_str())
        .collect();
    let [manifest] = manifests.as_slice() else {
        panic!("expected exactly one envoy-types package, found {manifests:?}");
    };
    let dir = PathBuf::from(manifest)
        .parent()
        .expect("a manifest has a directory")
        .join("proto");
    assert!(
        dir.join("data-plane-api/envoy/config/bootstrap/v3/bootstrap.proto")
            .is_file(),
        "envoy-types ships Envoy's protos in {}",
        dir.display()
    );
    dir
}

/// YAML to JSON as Envoy converts its YAML before the proto3 JSON parser:
/// scalars keep their YAML type. Duplicate keys are refused (serde_yaml's
/// Value does), as a configuration that has them is wrong whichever wins.
fn yaml_to_json(yaml: &str) -> Result<serde_json::Value, String> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(yaml).map_err(|error| format!("not YAML: {error}"))?;
    serde_json::to_value(value).map_err(|error| format!("YAML without a JSON form: {error}"))
}

struct Bounds {
    lt: Option<f64>,
    lte: Option<f64>,
    gt: Option<f64>,
    gte: Option<f64>,
}

impl Bounds {
    fn from_rules(rules: &DynamicMessage) -> Self {
        let get = |name: &str| {
            rules
                .has_field_by_name(name)
                .then(|| rules.get_field_by_name(name).and_then(|v| as_f64(&v)))
                .flatten()
        };
        Self {
            lt: get("lt"),
            lte: get("lte"),
            gt: get("gt"),
            gte: get("gte"),
        }
    }

    /// PGV: with both a lower and an upper bound, an upper bound below the
    /// lower one means "outside the range".
    fn admit(&self, x: f64) -> bool {
        let lower = match (self.gt, self.gte) {
            (Some(gt), _) => Some((x > gt, gt)),
            (None, Some(gte)) => Some((x >= gte, gte)),
            _ => None,
        };
        let upper = match (self.lt, self.lte) {
            (Some(lt), _) => Some((x < lt, lt)),
            (None, Some(lte)) => Some((x <= lte, lte)),
            _ => None,
        };
        match (lower, upper) {
            (Some((low_ok, low)), Some((up_ok, up))) if up < low => low_ok || up_ok,
            (lower, upper) => lower.is_none_or(|(ok, _)| ok) && upper.is_none_or(|(ok, _)| ok),
        }
    }
}

impl std::fmt::Display for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            self.gt.map(|v| format!("> {v}")),
            self.gte.map(|v| format!(">= {v}")),
            self.lt.map(|v| format!("< {v}")),
            self.lte.map(|v| format!("<= {v}")),
        ];
        let parts: Vec<String> = parts.into_iter().flatten().collect();
        f.write_str(&parts.join(", "))
    }
}

fn check_number(x: f64, rules: &DynamicMessage, path: &str, problems: &mut Vec<String>) {
    let bounds = Bounds::from_rules(rules);
    if !bounds.admit(x) {
        problems.push(format!("{path}: {x} is out of range {bounds}"));
    }
    if rules.has_field_by_name("const")
        && let Some(exact) = rules.get_field_by_name("const").and_then(|v| as_f64(&v))
        && x != exact
    {
        problems.push(format!("{path}: must be {exact}"));
    }
    let list = |name: &str| -> Vec<f64> {
        match rules.get_field_by_name(name).as_deref() {
            Some(Value::List(items)) => items.iter().filter_map(as_f64).collect(),
            _ => Vec::new(),
        }
    };
    let allowed = list("in");
    if !allowed.is_empty() && !allowed.contains(&x) {
        problems.push(format!("{path}: {x} not in {allowed:?}"));
    }
    if list("not_in").contains(&x) {
        problems.push(format!("{path}: {x} is not allowed"));
    }
}

fn check_string(text: &str, rules: &DynamicMessage, path: &str, problems: &mut Vec<String>) {
    if bool_field(rules, "ignore_empty") && text.is_empty() {
        return;
    }
    let chars = text.chars().count();
    length_rule(
        rules,
        "len",
        "min_len",
        "max_len",
        chars,
        "characters",
        path,
        problems,
    );
    length_rule(
        rules,
        "len_bytes",
        "min_bytes",
        "max_bytes",
        text.len(),
        "bytes",
        path,
        problems,
    );
    let set = |name: &str| {
        rules
            .has_field_by_name(name)
            .then(|| string_field(rules, name))
    };
    if let Some(exact) = set("const")
        && text != exact
    {
        problems.push(format!("{path}: must be {exact:?}"));
    }
    if let Some(prefix) = set("prefix")
        && !text.starts_with(&prefix)
    {
        problems.push(format!("{path}: {text:?} must start with {prefix:?}"));
    }
    if let Some(suffix) = set("suffix")
        && !text.ends_with(&suffix)
    {
        problems.push(format!("{path}: {text:?} must end with {suffix:?}"));
    }
    if let Some(needle) = set("contains")
        && !text.contains(&needle)
    {
        problems.push(format!("{path}: {text:?} must contain {needle:?}"));
    }
    if let Some(needle) = set("not_contains")
        && text.contains(&needle)
    {
        problems.push(format!("{path}: {text:?} must not contain {needle:?}"));
    }
    let allowed = string_list(rules, "in");
    if !allowed.is_empty() && !allowed.iter().any(|a| a == text) {
        problems.push(format!("{path}: {text:?} not in {allowed:?}"));
    }
    if string_list(rules, "not_in").iter().any(|a| a == text) {
        problems.push(format!("{path}: {text:?} is not allowed"));
    }
    if let Some(pattern) = set("pattern") {
        match regex_lite::Regex::new(&pattern) {
            Ok(regex) if !regex.is_match(text) => {
                problems.push(format!("{path}: {text:?} does not match {pattern:?}"))
            }
            Ok(_) => {}
            Err(error) => {
                problems.push(format!("{path}: cannot check pattern {pattern:?}: {error}"))
            }
        }
    }
    if rules.has_field_by_name("well_known_regex") {
        // `strict` defaults to true in validate.proto.
        let strict = !rules.has_field_by_name("strict") || bool_field(rules, "strict");
        let known = match rules.get_field_by_name("well_known_regex").as_deref() {
            Some(Value::EnumNumber(n)) => *n,
            _ => 0,
        };
        let no_line_breaks = !text.contains(['\0', '\n', '\r']);
        let ok = match (known, strict) {
            // HTTP_HEADER_NAME: an RFC 7230 token, optionally after ':'.
            (1, true) => {
                let name = text.strip_prefix(':').unwrap_or(text);
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_|~`".contains(&b))
            }
            // HTTP_HEADER_VALUE: no control characters except tab.
            (2, true) => !text
                .chars()
                .any(|c| (c.is_ascii_control() && c != '\t') || c == '\u{7f}'),
            (_, false) => no_line_breaks,
            _ => true,
        };
        if !ok {
            problems.push(format!(
                "{path}: {text:?} is not a valid HTTP header name or value"
            ));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn length_rule(
    rules: &DynamicMessage,
    exact: &str,
    min: &str,
    max: &str,
    length: usize,
    unit: &str,
    path: &str,
    problems: &mut Vec<String>,
) {
    let get = |name: &str| {
        rules
            .has_field_by_name(name)
            .then(|| rules.get_field_by_name(name).and_then(|v| v.as_u64()))
            .flatten()
    };
    let length = length as u64;
    if get(exact).is_some_and(|n| length != n) {
        problems.push(format!(
            "{path}: must be exactly {} {unit}",
            get(exact).unwrap_or_default()
        ));
    }
    if let Some(n) = get(min).filter(|n| length < *n) {
        problems.push(format!("{path}: must be at least {n} {unit}"));
    }
    if let Some(n) = get(max).filter(|n| length > *n) {
        problems.push(format!("{path}: must be at most {n} {unit}"));
    }
}

fn count_rule(
    rules: &DynamicMessage,
    min: &str,
    max: &str,
    count: usize,
    path: &str,
    problems: &mut Vec<String>,
) {
    let get = |name: &str| {
        rules
            .has_field_by_name(name)
            .then(|| rules.get_field_by_name(name).and_then(|v| v.as_u64()))
            .flatten()
    };
    let count = count as u64;
    if let Some(n) = get(min).filter(|n| count < *n) {
        problems.push(format!("{path}: needs at least {n} entries, has {count}"));
    }
    if let Some(n) = get(max).filter(|n| count > *n) {
        problems.push(format!("{path}: allows at most {n} entries, has {count}"));
    }
}

/// The member of `FieldRules.type` that is set, by name.
fn type_rules(rules: &DynamicMessage) -> Option<(String, DynamicMessage)> {
    let oneof = rules
        .descriptor()
        .oneofs()
        .find(|oneof| oneof.name() == "type")?;
    oneof.fields().find_map(|field| {
        if !rules.has_field(&field) {
            return None;
        }
        match rules.get_field(&field).as_ref() {
            Value::Message(typed) => Some((field.name().to_owned(), typed.clone())),
            _ => None,
        }
    })
}

fn sub_message(message: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    if !message.has_field_by_name(name) {
        return None;
    }
    match message.get_field_by_name(name)?.as_ref() {
        Value::Message(sub) => Some(sub.clone()),
        _ => None,
    }
}

fn bool_field(message: &DynamicMessage, name: &str) -> bool {
    message
        .get_field_by_name(name)
        .and_then(|value| value.as_bool())
        .unwrap_or(false)
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn string_list(message: &DynamicMessage, name: &str) -> Vec<String> {
    match message.get_field_by_name(name).as_deref() {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn flag(options: &DynamicMessage, extension: &ExtensionDescriptor) -> bool {
    options.has_extension(extension) && options.get_extension(extension).as_bool() == Some(true)
}

fn is_deprecated(field: &FieldDescriptor) -> bool {
    field
        .field_descriptor_proto()
        .options
        .as_ref()
        .and_then(|options| options.deprecated)
        .unwrap_or(false)
}

fn as_f64(value: &Value) -> Option<f64> {
    match *value {
        Value::I32(v) => Some(f64::from(v)),
        Value::I64(v) => Some(v as f64),
        Value::U32(v) => Some(f64::from(v)),
        Value::U64(v) => Some(v as f64),
        Value::F32(v) => Some(f64::from(v)),
        Value::F64(v) => Some(v),
        _ => None,
    }
}

fn duration_seconds(duration: &DynamicMessage) -> f64 {
    let seconds = duration
        .get_field_by_name("seconds")
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let nanos = duration
        .get_field_by_name("nanos")
        .and_then(|v| v.as_i32())
        .unwrap_or(0);
    seconds as f64 + f64::from(nanos) / 1e9
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Bool(v) => v.to_string(),
        MapKey::I32(v) => v.to_string(),
        MapKey::I64(v) => v.to_string(),
        MapKey::U32(v) => v.to_string(),
        MapKey::U64(v) => v.to_string(),
        MapKey::String(v) => format!("{v:?}"),
    }
}

fn map_key_value(key: &MapKey) -> Value {
    match key {
        MapKey::Bool(v) => Value::Bool(*v),
        MapKey::I32(v) => Value::I32(*v),
        MapKey::I64(v) => Value::I64(*v),
        MapKey::U32(v) => Value::U32(*v),
        MapKey::U64(v) => Value::U64(*v),
        MapKey::String(v) => Value::String(v.clone()),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn display<'a>(path: &'a str, type_name: &'a str) -> &'a str {
    if path.is_empty() { type_name } else { path }
}
