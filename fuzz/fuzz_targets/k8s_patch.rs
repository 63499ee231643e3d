//! PATCH application: the first byte picks merge, JSON, strategic merge
//! patch or server-side apply; the rest is the live object and the patch,
//! separated by a NUL byte (which JSON text cannot contain).
//! Checked: a merge patch applied twice changes nothing the second time (RFC
//! 7386 is idempotent), and a manager re-applying what it applied never
//! conflicts with itself.
#![no_main]

use bosun_apiserver::fuzzing::{apply_patch, server_side_apply};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const TYPES: [&str; 3] = [
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Some(sep) = rest.iter().position(|&b| b == 0) else {
        return;
    };
    let Ok(mut doc) = serde_json::from_slice::<Value>(&rest[..sep]) else {
        return;
    };
    let patch = &rest[sep + 1..];
    match first % 4 {
        3 => {
            let Ok(applied) = serde_json::from_slice::<Value>(patch) else {
                return;
            };
            let force = first & 0x80 != 0;
            let live = doc.is_object().then_some(&doc);
            if let Ok(merged) = server_side_apply(live, &applied, "fuzz", force) {
                if let Err(e) = server_side_apply(Some(&merged), &applied, "fuzz", false) {
                    assert!(
                        !e.ends_with("conflicts"),
                        "a manager conflicts with itself: {e}"
                    );
                }
                let _ = server_side_apply(Some(&merged), &doc, "other", force);
            }
        }
        t => {
            let ct = TYPES[usize::from(t)];
            if apply_patch(ct, &mut doc, patch).is_ok() && t == 0 {
                let once = doc.clone();
                apply_patch(ct, &mut doc, patch).expect("a merge patch that applied applies again");
                assert_eq!(doc, once, "a merge patch is idempotent");
            }
        }
    }
});
