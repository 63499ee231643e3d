//! Docker API request decoding: the input is `METHOD TARGET\n` followed by
//! the body; the engine's decoder routes the path, reads the query and
//! filters, and decodes and checks the JSON body of that path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let (method, target) = head.split_once(' ').unwrap_or(("POST", head));
    if let Err(e) = bosun_engine::fuzzing::decode_request(method, target, body) {
        // Every refusal is a client error with a message.
        assert!(e.http_status() < 500, "{e} is a server error");
    }
});
