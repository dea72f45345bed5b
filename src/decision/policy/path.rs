//! Request paths as route rules see them: bytes, never text, so a path
//! gatepass cannot read as UTF-8 still meets every rule a readable one
//! would (SPEC §3), and glob matching that takes time linear in the path
//! whatever the pattern.

use std::borrow::Cow;

/// The path as the upstream will most likely resolve it: no query,
/// percent-decoded, `//` collapsed, `.` and `..` resolved. Bytes stay bytes:
/// `/admin/café` raw and `/admin/caf%C3%A9` normalize to the same path.
/// Plain paths, the common case, are borrowed as they are.
pub fn normalize_path(raw: &[u8]) -> Cow<'_, [u8]> {
    let plain = raw.first() == Some(&b'/')
        && !raw.iter().any(|&b| matches!(b, b'?' | b'#' | b'%'))
        && !raw.windows(2).any(|pair| pair == b"//" || pair == b"/.");
    if plain {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(resolve_path(raw))
}

fn resolve_path(raw: &[u8]) -> Vec<u8> {
    let end = raw
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(raw.len());
    let decoded = percent_decode(&raw[..end]);
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    let trailing_slash = decoded.last() == Some(&b'/') && !segments.is_empty();
    let mut path = Vec::with_capacity(decoded.len() + 1);
    for segment in &segments {
        path.push(b'/');
        path.extend_from_slice(segment);
    }
    if path.is_empty() || trailing_slash {
        path.push(b'/');
    }
    path
}

/// `%XX` becomes its byte; a `%` without two hex digits stays as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The text in `bytes` with what is not text removed (invalid UTF-8,
/// control characters), as an upstream that sanitises its input reads it;
/// `None` when every byte is text already.
pub fn readable(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = |b: &u8| !b.is_ascii_control();
    let clean = bytes.is_ascii() && bytes.iter().all(text);
    if clean || (std::str::from_utf8(bytes).is_ok() && bytes.iter().all(text)) {
        return None;
    }
    let mut kept = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        kept.extend(chunk.valid().bytes().filter(text));
    }
    Some(kept)
}

/// A path glob: `*` matches within one segment (no `/`), `**` across
/// segments (anything, `/` included); every other byte matches itself.
///
/// Matching simulates the pattern as an automaton over a bit set of
/// positions, so a path costs one pass whatever the pattern: a
/// backtracking matcher takes exponential time on `/**/a/**/b/**/c` against
/// a long path of `/a/b/c` segments, and a client chooses the path.
#[derive(Debug, Clone)]
pub struct Glob {
    /// Bit `i` set: pattern token `i` is this byte, per byte value.
    literal: Vec<Words>,
    /// Tokens that are `*`.
    star: Words,
    /// Tokens that are `**`.
    any_depth: Words,
    /// `*` or `**`: may match nothing.
    skippable: Words,
    /// The position after the last token.
    accept: usize,
}

type Words = Box<[u64]>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Byte(u8),
    Star,
    AnyDepth,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut bytes = pattern.as_bytes().iter().peekable();
        while let Some(&byte) = bytes.next() {
            tokens.push(match byte {
                b'*' if bytes.peek() == Some(&&b'*') => {
                    bytes.next();
                    // `***` and longer mean `**`.
                    while bytes.peek() == Some(&&b'*') {
                        bytes.next();
                    }
                    Token::AnyDepth
                }
                b'*' => Token::Star,
                byte => Token::Byte(byte),
            });
        }
        let words = (tokens.len() + 1).div_ceil(64);
        let empty = || vec![0u64; words].into_boxed_slice();
        let mut literal = vec![empty(); 256];
        let (mut star, mut any_depth) = (empty(), empty());
        for (position, token) in tokens.iter().enumerate() {
            let set = |words: &mut Words| words[position / 64] |= 1 << (position % 64);
            match *token {
                Token::Byte(byte) => set(&mut literal[usize::from(byte)]),
                Token::Star => set(&mut star),
                Token::AnyDepth => set(&mut any_depth),
            }
        }
        let skippable = star
            .iter()
            .zip(any_depth.iter())
            .map(|(a, b)| a | b)
            .collect();
        Self {
            literal,
            star,
            any_depth,
            skippable,
            accept: tokens.len(),
        }
    }

    pub fn matches(&self, path: &[u8]) -> bool {
        let words = self.star.len();
        let mut current = vec![0u64; words];
        let mut next = vec![0u64; words];
        current[0] = 1;
        self.close(&mut current);
        for &byte in path {
            let literal = &self.literal[usize::from(byte)];
            // Positions that stay: `**` always, `*` unless the byte ends a
            // segment. Positions that advance: a literal equal to the byte.
            let mut carry = 0;
            let mut alive = 0;
            for word in 0..words {
                let staying = if byte == b'/' {
                    self.any_depth[word]
                } else {
                    self.skippable[word]
                };
                let advancing = current[word] & literal[word];
                next[word] = (current[word] & staying) | (advancing << 1) | carry;
                carry = advancing >> 63;
                alive |= next[word];
            }
            if alive == 0 {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut current, &mut next);
        }
        current[self.accept / 64] & (1 << (self.accept % 64)) != 0
    }

    /// Adds the positions reachable by letting `*` and `**` match nothing.
    fn close(&self, states: &mut [u64]) {
        loop {
            let mut carry = 0;
            let mut grew = false;
            for (word, state) in states.iter_mut().enumerate() {
                let skipping = *state & self.skippable[word];
                let reached = (skipping << 1) | carry;
                carry = skipping >> 63;
                if reached & !*state != 0 {
                    *state |= reached;
                    grew = true;
                }
            }
            if !grew {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious backtracking matcher, exponential in the worst case:
    /// the reference the automaton must agree with.
    fn reference(glob: &[u8], path: &[u8]) -> bool {
        match glob {
            [] => path.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=path.len()).any(|skip| reference(rest, &path[skip..])),
            [b'*', rest @ ..] => {
                let segment = path.iter().position(|&b| b == b'/').unwrap_or(path.len());
                (0..=segment).any(|skip| reference(rest, &path[skip..]))
            }
            [first, rest @ ..] => path.first() == Some(first) && reference(rest, &path[1..]),
        }
    }

    fn matches(glob: &str, path: &str) -> bool {
        Glob::new(glob).matches(path.as_bytes())
    }

    #[test]
    fn star_stays_in_its_segment_and_double_star_crosses() {
        assert!(matches("/a/*/c", "/a/b/c"));
        assert!(!matches("/a/*/c", "/a/b/x/c"));
        assert!(matches("/a/**", "/a/b/x/c"));
        assert!(matches("/a/**", "/a/"));
        assert!(!matches("/a/**", "/a"));
        assert!(matches("/a/**/c", "/a/b/x/c"));
        assert!(matches("/*.json", "/x.json"));
        assert!(!matches("/*.json", "/d/x.json"));
        assert!(matches("/a/*", "/a/"));
        assert!(matches("/***", "/x/y"));
        assert!(!matches("", "/"));
        assert!(matches("", ""));
    }

    #[test]
    fn long_patterns_span_several_words() {
        let segments = "/seg".repeat(40);
        let glob = format!("{segments}/**/end");
        assert!(matches(&glob, &format!("{segments}/x/y/end")));
        assert!(!matches(&glob, &format!("{segments}/x/y/ends")));
    }

    #[test]
    fn hostile_paths_take_linear_time() {
        let glob = Glob::new("/**/a/**/b/**/c/**/d/**/e");
        let path = "/a/b/c/d".repeat(640);
        let started = std::time::Instant::now();
        assert!(!glob.matches(path.as_bytes()));
        println!("640 segments: {:?}", started.elapsed());
        // A backtracking matcher needs minutes here; the automaton needs
        // microseconds. The bound is loose so that a slow machine passes.
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn raw_and_encoded_bytes_normalize_alike() {
        assert_eq!(
            normalize_path("/admin/café".as_bytes()),
            normalize_path(b"/admin/caf%C3%A9")
        );
        assert_eq!(
            &*normalize_path(b"/x/\xff/../../admin/users"),
            b"/admin/users"
        );
        assert_eq!(&*normalize_path(b"/admin\xff/x"), b"/admin\xff/x");
        assert_eq!(&*normalize_path(b"/admin/%ff"), b"/admin/\xff");
    }

    #[test]
    fn readable_drops_what_is_not_text() {
        assert_eq!(readable(b"/admin/x"), None);
        assert_eq!(readable("/café".as_bytes()), None);
        assert_eq!(readable(b"/admin\xff/x").as_deref(), Some(&b"/admin/x"[..]));
        assert_eq!(readable(b"/a\x00b\x7f").as_deref(), Some(&b"/ab"[..]));
        assert_eq!(
            readable("/caf\u{e9}\x01".as_bytes()).as_deref(),
            Some("/café".as_bytes())
        );
    }

    #[test]
    fn paths_are_normalized_before_matching() {
        let normalized = |raw: &str| String::from_utf8(normalize_path(raw.as_bytes()).into_owned());
        assert_eq!(normalized("/orders/7?x=1").unwrap(), "/orders/7");
        assert_eq!(normalized("//admin//users/").unwrap(), "/admin/users/");
        assert_eq!(normalized("/public/../admin/x").unwrap(), "/admin/x");
        assert_eq!(normalized("/public/..%2Fadmin/x").unwrap(), "/admin/x");
        assert_eq!(normalized("/%61dmin").unwrap(), "/admin");
        assert_eq!(normalized("/../..").unwrap(), "/");
        assert_eq!(normalized("").unwrap(), "/");
        assert_eq!(normalized("/bad%zz%").unwrap(), "/bad%zz%");
        assert_eq!(normalized("/a%2").unwrap(), "/a%2");
    }

    proptest! {
        #[test]
        fn automaton_agrees_with_backtracking(
            glob in "[ab/*]{0,10}",
            path in "[ab/]{0,14}",
        ) {
            prop_assert_eq!(
                Glob::new(&glob).matches(path.as_bytes()),
                reference(glob.as_bytes(), path.as_bytes()),
                "glob {:?} path {:?}", glob, path
            );
        }
    }
}
