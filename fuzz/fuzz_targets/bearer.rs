#![no_main]
//! Bearer extraction (README "Decision": `Authorization: Bearer <token>`,
//! scheme case-insensitive, any other scheme is no credential):
//! - `AuthorizationHeader::from_values(..).bearer_token()` and
//!   `decision::bearer_token` never panic;
//! - no value is `missing_token`; two or more values, or one containing
//!   `,`, are `malformed_token`;
//! - an Ok token is a sub-slice of the value, without leading or trailing
//!   ASCII whitespace, and only a case-insensitive `bearer` scheme yields
//!   one; both functions agree with a reference written from the README.
//!
//! Input: a mode byte, then the values. Mode % 4: 0 or 1, the rest is one
//! value; 2, the rest is several values separated by NUL; 3, no value at
//! all (the rest still goes through `bearer_token`).

use gatepass::decision::{AuthorizationHeader, DenyReason, bearer_token};
use gatepass_fuzz::reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        gatepass_fuzz::seeds::write_if_asked("bearer");
    },
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let values: Vec<&[u8]> = match mode % 4 {
            0 | 1 => vec![rest],
            2 => gatepass_fuzz::fields(rest, 0),
            _ => Vec::new(),
        };
        for value in values.iter().copied().chain([rest]) {
            check_function(value);
        }
        check_header(&values);
    }
);

fn within(token: &[u8], value: &[u8]) -> bool {
    let range = value.as_ptr_range();
    let start = token.as_ptr();
    // An empty token may sit at the very end of the value.
    range.start <= start && start as usize + token.len() <= range.end as usize
}

fn check_function(value: &[u8]) {
    let got = bearer_token(value);
    assert_eq!(got, reference::bearer(value), "bearer_token({value:?})");
    if let Some(token) = got {
        check_token(token, value);
    }
}

fn check_token(token: &[u8], value: &[u8]) {
    assert!(within(token, value), "token {token:?} is not a sub-slice of {value:?}");
    assert_eq!(token.trim_ascii(), token, "token {token:?} of {value:?} is not trimmed");
    let trimmed = value.trim_ascii();
    assert!(
        trimmed.len() >= 6
            && trimmed[..6].eq_ignore_ascii_case(b"bearer")
            && matches!(trimmed.get(6), None | Some(b' ' | b'\t')),
        "a token out of a value without the bearer scheme: {value:?}"
    );
}

fn check_header(values: &[&[u8]]) {
    let got = AuthorizationHeader::from_values(values.iter().copied()).bearer_token();
    let want = match values {
        [] => Err(DenyReason::MissingToken),
        [value] if value.contains(&b',') => Err(DenyReason::MalformedToken),
        [value] => reference::bearer(value).ok_or(DenyReason::MissingToken),
        _ => Err(DenyReason::MalformedToken),
    };
    assert_eq!(got, want, "values {values:?}");
    if let Ok(token) = got {
        let [value] = values else {
            panic!("a token out of {} values", values.len());
        };
        check_token(token, value);
        assert!(!token.contains(&b','), "token with a comma: {value:?}");
    }
}
