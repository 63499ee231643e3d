//! The Docker SDK for Python (the `docker` package from PyPI) drives a test
//! engine through `tests/py/docker_sdk_suite.py`. scripts/install-deps.sh
//! installs the SDK in a virtual environment; without it the test fails.

mod common;

use common::engine::TestEngine;

/// Where scripts/install-deps.sh puts the SDK.
const PYTHON: &str = "/opt/bosun-py/bin/python";

#[test]
fn docker_sdk_for_python_suite() {
    assert!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} is missing: run scripts/install-deps.sh (it installs the docker SDK from PyPI)"
    );
    let e = TestEngine::start();
    let port = 20000 + (e.subnet_third * 41 + 7) % 9000;
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/docker_sdk_suite.py");
    let out = std::process::Command::new(PYTHON)
        .arg(suite)
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env("BOSUN_TEST_PORT", port.to_string())
        .env(
            "BOSUN_TEST_SUBNET",
            format!("10.92.{}.0/24", e.subnet_third),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "the SDK suite failed:\n{stdout}\n{}\nengine log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        e.log()
    );
}
