//! The control-protocol decoder on arbitrary bytes: it may refuse, never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = supervisor::control::decode(data);
});
