//! Root tests: a real bridge and veth into a real netns (`ip netns add`), checked
//! from inside with `ip` and busybox `ping`, then torn down with nothing left.
//! Every test uses its own names and subnet, and Drop guards clean up even when
//! an assertion fails.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use bosun_net::{
    Attachment, IfName, Ipam, LinkError, Subnet, attach, delete_bridge, detach, ensure_bridge,
};
use bosun_oci::ErrorKind;

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

fn link_exists(name: &str) -> bool {
    run(&["ip", "link", "show", "dev", name]).status.success()
}

/// Short unique names (≤ 15 bytes) and the test's own /24.
struct Names {
    ns: String,
    bridge: IfName,
    veth: IfName,
    subnet: Subnet,
}

fn names(octet: u8) -> Names {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let tag = format!("{:x}{n}", std::process::id() % 0xfffff);
    // Each test passes its own third octet, so concurrent tests' bridges never
    // share a subnet (their routes would compete and ping could leave by the
    // wrong bridge).
    Names {
        ns: format!("bosun-test-{tag}"),
        bridge: IfName::new(&format!("bbr{tag}")).unwrap(),
        veth: IfName::new(&format!("bve{tag}")).unwrap(),
        subnet: Subnet::new(Ipv4Addr::new(10, 199, octet, 0), 24).unwrap(),
    }
}

struct Netns(String);

impl Netns {
    fn new(name: &str) -> Self {
        let out = run(&["ip", "netns", "add", name]);
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        Self(name.to_owned())
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        run(&["ip", "netns", "del", &self.0]);
    }
}

/// Deletes an interface the test created, if still there.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        if link_exists(&self.0) {
            run(&["ip", "link", "del", "dev", &self.0]);
        }
    }
}

#[test]
fn attach_works_from_inside_and_teardown_leaves_nothing() {
    bosun_testkit::require_root();
    let n = names(1);
    let state = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(state.path(), n.subnet).unwrap();
    let ns = Netns::new(&n.ns);
    let _bridge_guard = LinkGuard(n.bridge.to_string());
    let _veth_guard = LinkGuard(n.veth.to_string());

    ensure_bridge(&n.bridge, n.subnet).unwrap();
    // Idempotent: a second call (daemon restart) changes nothing and fails not,
    // also when several callers race to create it (best effort: the window in
    // which two of them both see no bridge is small, so this rarely hits it).
    std::thread::scope(|s| {
        let racers: Vec<_> = (0..4)
            .map(|_| s.spawn(|| ensure_bridge(&n.bridge, n.subnet)))
            .collect();
        for r in racers {
            r.join().unwrap().unwrap();
        }
    });
    ensure_bridge(&n.bridge, n.subnet).unwrap();
    let br = String::from_utf8(run(&["ip", "-4", "addr", "show", "dev", n.bridge.as_str()]).stdout)
        .unwrap();
    assert!(br.contains(&format!("{}/24", n.subnet.gateway())), "{br}");

    let ip = ipam.allocate("c1").unwrap();
    let a = Attachment {
        bridge: n.bridge.clone(),
        host_veth: n.veth.clone(),
        netns: ns.path(),
        address: ip,
        subnet: n.subnet,
    };
    attach(&a).unwrap();

    let addr =
        String::from_utf8(ns.exec(&["ip", "-4", "addr", "show", "dev", "eth0"]).stdout).unwrap();
    assert!(addr.contains(&format!("{ip}/24")), "{addr}");
    let routes = String::from_utf8(ns.exec(&["ip", "-4", "route"]).stdout).unwrap();
    assert!(
        routes.contains(&format!("default via {} dev eth0", n.subnet.gateway())),
        "{routes}"
    );
    let lo = String::from_utf8(ns.exec(&["ip", "link", "show", "dev", "lo"]).stdout).unwrap();
    assert!(lo.contains("UP"), "{lo}");
    let gw = n.subnet.gateway().to_string();
    let ping = ns.exec(&[bosun_testkit::BUSYBOX, "ping", "-c1", "-W2", &gw]);
    assert!(ping.status.success(), "ping {gw} from the netns: {ping:?}");
    let master =
        String::from_utf8(run(&["ip", "link", "show", "dev", n.veth.as_str()]).stdout).unwrap();
    assert!(master.contains(&format!("master {}", n.bridge)), "{master}");

    assert!(detach(&n.veth).unwrap());
    assert!(!link_exists(n.veth.as_str()));
    let inside = String::from_utf8(ns.exec(&["ip", "link", "show"]).stdout).unwrap();
    assert!(!inside.contains("eth0"), "{inside}");
    assert!(!detach(&n.veth).unwrap(), "a second detach reports nothing");
    assert!(ipam.release(ip).unwrap());

    assert!(delete_bridge(&n.bridge).unwrap());
    assert!(!link_exists(n.bridge.as_str()));
    assert!(!delete_bridge(&n.bridge).unwrap());
    drop(ns);
    assert!(!PathBuf::from("/run/netns").join(&n.ns).exists());
}

#[test]
fn failure_inside_the_netns_undoes_the_veth() {
    bosun_testkit::require_root();
    let n = names(2);
    let ns = Netns::new(&n.ns);
    let _bridge_guard = LinkGuard(n.bridge.to_string());
    let _veth_guard = LinkGuard(n.veth.to_string());
    ensure_bridge(&n.bridge, n.subnet).unwrap();
    // An eth0 already inside makes the rename (a late step) fail. A bridge,
    // because this kernel has no dummy module.
    let out = ns.exec(&["ip", "link", "add", "eth0", "type", "bridge"]);
    assert!(out.status.success(), "{out:?}");

    let before = String::from_utf8(ns.exec(&["ip", "-o", "link", "show"]).stdout).unwrap();
    let e = attach(&Attachment {
        bridge: n.bridge.clone(),
        host_veth: n.veth.clone(),
        netns: ns.path(),
        address: Ipv4Addr::from(u32::from(n.subnet.gateway()) + 1),
        subnet: n.subnet,
    })
    .unwrap_err();
    assert!(matches!(e, LinkError::Netlink { .. }), "{e}");
    assert!(e.to_string().contains("eth0"), "{e}");
    assert!(!link_exists(n.veth.as_str()), "host veth left behind");
    let after = String::from_utf8(ns.exec(&["ip", "-o", "link", "show"]).stdout).unwrap();
    assert_eq!(
        after.lines().count(),
        before.lines().count(),
        "peer left in netns:\n{after}"
    );
    assert!(delete_bridge(&n.bridge).unwrap());
}

#[test]
fn bad_inputs_create_nothing() {
    bosun_testkit::require_root();
    let n = names(3);
    let ns = Netns::new(&n.ns);
    let _bridge_guard = LinkGuard(n.bridge.to_string());
    let _veth_guard = LinkGuard(n.veth.to_string());
    let mut a = Attachment {
        bridge: n.bridge.clone(),
        host_veth: n.veth.clone(),
        netns: ns.path(),
        address: Ipv4Addr::from(u32::from(n.subnet.gateway()) + 1),
        subnet: n.subnet,
    };

    // No bridge yet.
    let e = attach(&a).unwrap_err();
    assert!(matches!(e, LinkError::Missing { .. }), "{e}");
    assert!(e.to_string().contains(n.bridge.as_str()), "{e}");
    assert!(!link_exists(n.veth.as_str()));

    ensure_bridge(&n.bridge, n.subnet).unwrap();

    // A netns path that does not exist.
    a.netns = PathBuf::from("/run/netns/bosun-test-does-not-exist");
    let e = attach(&a).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("bosun-test-does-not-exist"), "{e}");
    assert!(!link_exists(n.veth.as_str()));

    // A host name that is taken: refused, and the existing interface survives.
    a.netns = ns.path();
    // (A veth pair the test makes; deleting one end removes both.)
    let peer = format!("{}p", n.veth);
    let out = run(&[
        "ip",
        "link",
        "add",
        n.veth.as_str(),
        "type",
        "veth",
        "peer",
        "name",
        &peer,
    ]);
    assert!(out.status.success(), "{out:?}");
    let e = attach(&a).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(
        link_exists(n.veth.as_str()),
        "someone else's interface was removed"
    );

    // A bridge name taken by an interface of another kind: refused, untouched.
    let e = ensure_bridge(&n.veth, n.subnet).unwrap_err();
    assert!(matches!(e, LinkError::NotABridge { .. }), "{e}");
    let addrs = run(&["ip", "-4", "addr", "show", "dev", n.veth.as_str()]);
    assert!(String::from_utf8(addrs.stdout).unwrap().trim().is_empty());
    // Nor do teardown calls delete an interface of another kind.
    let e = delete_bridge(&n.veth).unwrap_err();
    assert!(matches!(e, LinkError::WrongKind { .. }), "{e}");
    let other = IfName::new(&peer).unwrap();
    let e = detach(&n.bridge).unwrap_err();
    assert!(matches!(e, LinkError::WrongKind { .. }), "{e}");
    assert!(link_exists(n.veth.as_str()) && link_exists(other.as_str()));

    assert!(delete_bridge(&n.bridge).unwrap());
}
