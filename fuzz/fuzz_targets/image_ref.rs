//! Image references and digests: parsing never panics, and a parsed
//! reference prints as a string that parses back to the same reference.
#![no_main]

use bosun_oci::{Digest, ImageRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = text.parse::<ImageRef>() {
        let printed = r.to_string();
        let again: ImageRef = printed.parse().unwrap_or_else(|e| {
            panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
        });
        assert_eq!(r, again, "{text:?} printed as {printed:?}");
        let _ = r.name();
    }
    if let Ok(d) = text.parse::<Digest>() {
        assert_eq!(d.to_string().parse::<Digest>().ok(), Some(d));
    }
});
