//! What the gatepass fuzz targets share: straightforward reference
//! implementations the targets compare the library with ([`reference`]),
//! the deterministic tokens and Envoy requests of the gRPC target
//! ([`fixtures`]), and the hand-written seed inputs of every target
//! ([`seeds`]).

pub mod fixtures;
pub mod reference;
pub mod seeds;

/// Splits `bytes` at every `separator` byte (like `split`, always at least
/// one part). The targets' input formats use it to carry several fields.
pub fn fields(bytes: &[u8], separator: u8) -> Vec<&[u8]> {
    bytes.split(|&b| b == separator).collect()
}

/// AddressSanitizer's defaults for every target, so that `cargo fuzz run`
/// needs no `ASAN_OPTIONS`: the SQLite amalgamation that sqlx bundles has
/// two function-local static arrays both called `aiOff`, which ASan's
/// one-definition-rule check reports as a violation at start-up (a false
/// positive: they are distinct statics).
#[unsafe(no_mangle)]
pub extern "C" fn __asan_default_options() -> *const std::ffi::c_char {
    c"detect_odr_violation=0".as_ptr()
}
