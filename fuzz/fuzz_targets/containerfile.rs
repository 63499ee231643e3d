//! The Containerfile parser and `.dockerignore` rules: any text either parses
//! or is refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = bosun_image::build::parse(text) {
        // Whatever parsed prints its instructions without panicking.
        let _ = format!("{file:?}");
    }
    let _ = bosun_image::build::IgnoreRules::parse(text);
});
