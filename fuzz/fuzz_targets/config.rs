//! The config loader on arbitrary text: it may refuse, never panic, and a
//! refusal always names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = std::path::Path::new("fuzz.toml");
    if let Err(e) = supervisor::config::parse(file, text) {
        assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
    }
});
