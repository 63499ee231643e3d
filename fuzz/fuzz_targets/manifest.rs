//! Manifests, indexes and image configs as they arrive from registries and
//! archives: the first byte picks the media type the transport claims.
#![no_main]

use bosun_image::manifest::{self, Manifest};
use libfuzzer_sys::fuzz_target;

const DECLARED: [Option<&str>; 7] = [
    None,
    Some(manifest::OCI_MANIFEST),
    Some(manifest::OCI_INDEX),
    Some(manifest::DOCKER_MANIFEST),
    Some(manifest::DOCKER_MANIFEST_LIST),
    Some("application/json"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, doc)) = data.split_first() else {
        return;
    };
    let declared = DECLARED[usize::from(first) % DECLARED.len()];
    match Manifest::parse(doc, declared) {
        Ok(m) => {
            for d in m.references() {
                let _ = manifest::descriptor_digest(d);
            }
            if let Manifest::Index(index) = &m {
                let _ = manifest::select_platform(&index, manifest::HOST_OS, manifest::HOST_ARCH);
            }
        }
        Err(e) => {
            let _ = (e.kind(), e.to_string());
        }
    }
    let _ = oci_spec::image::ImageConfiguration::from_reader(doc);
});
