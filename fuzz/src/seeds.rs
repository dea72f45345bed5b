//! Hand-written seed inputs, one set per target, in each target's input
//! format. They are committed under fuzz/seeds/<target>/; to rewrite them,
//! run any target with `GATEPASS_FUZZ_WRITE_SEEDS=fuzz/seeds`: it writes
//! its own set to `fuzz/seeds/<target>/` and exits.

use std::path::Path;

use prost::Message as _;

use crate::fixtures::{Call, tokens};

/// Called from every target's `init`: writes the target's seeds when asked.
pub fn write_if_asked(target: &str) {
    let Some(root) = std::env::var_os("GATEPASS_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = Path::new(&root).join(target);
    std::fs::create_dir_all(&dir).expect("seed directory can be created");
    let seeds = seeds(target);
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed).expect("seed can be written");
    }
    eprintln!("wrote {} seeds to {}", seeds.len(), dir.display());
    std::process::exit(0);
}

pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "token_parse" => token_parse(),
        "bearer" => bearer(),
        "client_ip" => client_ip(),
        "requirements" => requirements(),
        "path_glob" => path_glob(),
        "policy" => policy(),
        "grpc_check" => grpc_check(),
        other => panic!("no seeds for {other}"),
    }
}

fn bytes<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    items.into_iter().map(<[u8]>::to_vec).collect()
}

fn token_parse() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for token in tokens() {
        seeds.push(token.plain().into_bytes());
        seeds.push(token.secret.clone().into_bytes());
    }
    let first = &tokens()[0];
    let mut wrong = first.plain().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
    seeds.push(wrong);
    seeds.push(first.secret.replace("gp_", "acme_live-").into_bytes());
    seeds.extend(bytes([
        &b"7|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"[..],
        b"9223372036854775807|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN",
        b"9223372036854775808|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN",
        b"1|gp_short",
        b"1|",
        b"|x",
        b"-1|x",
        b"1|with space",
        b"1|\xff\xfe",
        b"0|a",
        b"tok0123456789",
    ]));
    seeds
}

fn bearer() -> Vec<Vec<u8>> {
    let token = tokens()[0].plain();
    let mut seeds = vec![
        format!("\x00Bearer {token}").into_bytes(),
        format!("\x00  bearer \t {token}  \r\n").into_bytes(),
        format!("\x02Bearer {token}\x00Bearer {token}").into_bytes(),
        format!("\x00Bearer {token}, Bearer {token}").into_bytes(),
    ];
    seeds.extend(bytes([
        &b"\x00BEARER\tabc"[..],
        b"\x00Bearer",
        b"\x00Bearerabc",
        b"\x00Bearer\x0cabc",
        b"\x00Basic dXNlcjpwYXNz",
        b"\x00Token abc",
        b"\x02Basic x\x00Bearer y",
        b"\x03",
        b"\x01Bear",
        b"\x00 \t\r\n",
    ]));
    seeds
}

/// Control bytes (trusted list, peer, hops, source), then lines: `F` an
/// X-Forwarded-For line, `R` an X-Real-IP value, `J` junk for the
/// rewrite checks, `N` a trusted list to parse, `P`/`S` a peer/source.
fn client_ip() -> Vec<Vec<u8>> {
    bytes([
        &b"\x00\x00\x01\x03F6.6.6.6, 203.0.113.5, 10.1.1.1"[..],
        b"\x01\x00\x01\x03F203.0.113.5, 10.1.1.1\nF127.0.0.1",
        b"\x00\x00\x00\x00R203.0.113.5",
        b"\x00\x00\x00\x00R203.0.113.5\nR127.0.0.1",
        b"\x00\x00\x00\x00Rx",
        b"\x01\x00\x01\x02F\xff, 10.9.9.9, 203.0.113.5\nJ\xff\xfe, 1.2.3.4",
        b"\x01\x00\x02\x02F203.0.113.5\nF\xff",
        b"\x00\x04\x00\x00F10.0.0.1",
        b"\x04\x05\x01\x01F::ffff:10.0.0.7, ::1\nF 2001:db8::5 ",
        b"\x00\x00\x03\x01F1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4,5.5.5.5",
        b"\x00\x00\x01\x01N10.0.0.0/8, ::1, ::ffff:192.0.2.0/120\nF192.0.2.7, 10.2.2.2",
        b"\x00\x00\x01\x01P::ffff:127.0.0.1\nF203.0.113.9",
        b"\x02\x00\x01\x01S10.0.0.5\nF203.0.113.7, 10.0.0.5",
        b"\x00\x00\x00\x00F",
    ])
}

/// Lines: the held abilities, then requirements (`+` require_any, else
/// require_all), `--` switching to the second set, `^` extra abilities.
fn requirements() -> Vec<Vec<u8>> {
    bytes([
        &b"orders:read,inventory:*\norders:read\n+orders:write,inventory:read\n--\nadmin\n^admin"[..],
        b"*\nanything, at all\n+x\n--\n+y,z",
        b"inventory:*\ninventory:read\ninventory:*\ninventory\n^inventory",
        b"a*b\naxb\n+a*b\n^*",
        b"orders:read, Zeta,alpha,orders:read,*\n",
        b"with space,ok\nok\n--\n , ,\n+",
        b":*,*:*\n:x\n*:y\n--\n*",
        b"\xff\xfe\nx\xff",
    ])
}

/// Flags (bit 0: small alphabet), glob length, glob, then the path.
fn path_glob() -> Vec<Vec<u8>> {
    let with = |flags: u8, glob: &[u8], path: &[u8]| {
        let mut seed = vec![flags, glob.len() as u8];
        seed.extend_from_slice(glob);
        seed.extend_from_slice(path);
        seed
    };
    vec![
        with(0, b"/a/*/c", b"/a/b/c"),
        with(0, b"/a/**", b"/a/b/x/c"),
        with(0, b"/admin/**", b"/public/..%2Fadmin/users?x=1"),
        with(0, b"/orders/*/lines", b"//orders//7/lines/"),
        with(0, b"/*.json", b"/x.json#frag"),
        with(0, b"/***", b"/x/./y/../z"),
        with(0, b"/**/a/**/b/**/c", b"/a/b/c/a/b/c/a/b"),
        with(0, b"", b""),
        with(0, b"/caf\xc3\xa9/*", b"/caf%C3%A9/menu"),
        with(0, b"/x", b"/x/\xff/../../admin/users"),
        with(0, b"/%2e", b"/%2E%2e/%41dmin%2"),
        with(1, b"\x00\x01\x02\x03\x03\x00", b"\x00\x01\x02\x00\x01"),
        with(
            0,
            "/seg".repeat(18).as_bytes(),
            format!("{}/end", "/seg".repeat(18)).as_bytes(),
        ),
    ]
}

/// Mode 0: insertions, then a path checked against the `/admin/` rules.
/// Mode 1: method, host and path (NUL-separated) through fixed policies.
/// Mode 2: a policy file to parse.
fn policy() -> Vec<Vec<u8>> {
    bytes([
        &b"\x00\x00/admin/users"[..],
        b"\x00\x02\x06\x00\x0a\x0c/admin/users",
        b"\x00\x01\x07\x00/x/\xff/../../admin/users",
        b"\x00\x00/public/..%2Fadmin/x?y",
        b"\x00\x00//admin/\x00",
        b"\x00\x01\x03\x00/admin/caf%C3%A9",
        b"\x01DELETE\x00api.internal:8080\x00/orders/7",
        b"\x01DEL\xffETE\x00api.internal\x00/orders/7",
        b"\x01GET\x00x\x00/orders/7/lines",
        b"\x01GET\x00x\x00/admin\xff/x",
        b"\x01GET\x00[::1]:8080\x00/adm\x7fin/x",
        b"\x02[[rule]]\npath = \"/a/*\"\nrequire_all = [\"a\"]\n[default]\nrequire_any = [\"b\", \"c\"]\n",
        b"\x02[[rule]]\nhost = \"*.internal\"\nmethods = [\"DELETE\"]\npath_prefix = \"/orders/\"\nrequire_all = [\"orders:delete\"]\n",
        b"\x02[[rule]]\npath = \"/a\"\npath_prefix = \"/b\"\n",
        b"\x02[[rule\n",
    ])
}

fn grpc_check() -> Vec<Vec<u8>> {
    let all = tokens();
    let mut calls = Vec::new();
    for token in &all {
        calls.push(Call::bearer(&token.plain()));
    }
    let [reader, admin, _, locked, legacy, ..] = &all[..] else {
        unreachable!("eight tokens");
    };
    calls.extend([
        Call::bearer(&reader.plain()).context("require_all", "orders:read"),
        Call::bearer(&reader.plain()).context("require_all", "orders:write"),
        Call::bearer(&reader.plain()).context("require_any", "orders:write, orders:read"),
        Call::bearer(&admin.plain())
            .context("require_all", "admin,billing:*")
            .context("require_any", "x"),
        Call::bearer(&locked.plain()).source("10.1.2.3"),
        Call::bearer(&locked.plain()).source("::ffff:10.1.2.3"),
        Call::bearer(&locked.plain())
            .source("10.0.0.5")
            .header("x-forwarded-for", "203.0.113.7, 10.9.9.9, 10.0.0.5"),
        Call::bearer(&locked.plain()).header("x-forwarded-for", "10.1.1.1, 192.0.2.1"),
        Call::bearer(&legacy.secret),
        Call::bearer(&reader.secret),
        Call::bearer(&legacy.plain()).context("require_all", "inventory:write"),
        Call::default().header("authorization", &format!("bearer\t{}  ", admin.plain())),
        Call::default().header("authorization", &format!("Basic {}", admin.plain())),
        Call::default().header(
            "authorization",
            &format!("Bearer {}, Bearer {}", reader.plain(), admin.plain()),
        ),
        Call::default(),
        Call::default().raw("authorization", format!("Bearer {}", admin.plain()).as_bytes()),
        Call::default()
            .raw("Authorization", format!("Bearer {}", admin.plain()).as_bytes())
            .raw("authorization", format!("Bearer {}", reader.plain()).as_bytes()),
        Call::bearer(&reader.plain())
            .raw("authorization", format!("Bearer {}", reader.plain()).as_bytes()),
        Call::default()
            .raw("authorization", b"Bearer \xff\xfe")
            .raw("x-forwarded-for", b"203.0.113.1"),
        Call::bearer(&format!("0{}", admin.plain())),
        Call::bearer(&admin.plain()).route("DELETE", "api.internal:8080", "/admin/..%2Fx"),
        Call::bearer(&admin.plain()).source("not an address"),
    ]);
    let mut seeds: Vec<Vec<u8>> = calls.into_iter().map(|call| call.build().encode_to_vec()).collect();
    seeds.push(Vec::new());
    seeds
}
