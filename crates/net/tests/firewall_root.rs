//! Root tests of the nftables table: rules land in our own table only, are
//! removed by handle, and the table goes away; other tables are never touched.

use std::net::Ipv4Addr;
use std::process::Command;

use bosun_net::{Firewall, PortMapping, Protocol};

fn nft(args: &[&str]) -> (bool, String) {
    let out = Command::new("nft")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run nft {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Deletes the test's table even when an assertion fails.
struct TableGuard(String);

impl Drop for TableGuard {
    fn drop(&mut self) {
        nft(&["delete", "table", "ip", &self.0]);
    }
}

/// Every table but ours and other bosun tests' (which come and go while tests
/// run in parallel), to check we touched none of them.
fn other_tables(ours: &str) -> Vec<String> {
    let (ok, out) = nft(&["list", "tables"]);
    assert!(ok, "{out}");
    out.lines()
        .filter(|l| !l.ends_with(&format!(" {ours}")) && !l.contains(" bosun_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn rules_are_added_and_removed_by_handle_in_our_table_only() {
    bosun_testkit::require_root();
    let name = format!("bosun_t{}", std::process::id());
    let _guard = TableGuard(name.clone());
    let before = other_tables(&name);
    let fw = Firewall::new(&name).unwrap();

    fw.ensure().unwrap();
    fw.ensure().unwrap();
    let masq = fw
        .masquerade("10.198.0.0/24".parse().unwrap(), None)
        .unwrap();
    let ports = fw
        .publish(
            &PortMapping {
                protocol: Protocol::Tcp,
                host_port: 18080,
                container: Ipv4Addr::new(10, 198, 0, 2),
                container_port: 80,
            },
            "c1",
        )
        .unwrap();
    assert_eq!(ports.len(), 2);
    let other = fw
        .publish(
            &PortMapping {
                protocol: Protocol::Udp,
                host_port: 18053,
                container: Ipv4Addr::new(10, 198, 0, 3),
                container_port: 53,
            },
            "c2",
        )
        .unwrap();

    // Found again by owner, as after a daemon crash.
    let listed = fw.rules().unwrap();
    assert_eq!(listed.len(), 3 + 2 + 2, "{listed:?}");
    for p in &ports {
        assert!(
            listed.contains(&(p.clone(), Some("c1".to_owned()))),
            "{listed:?}"
        );
    }
    assert_eq!(fw.remove_owner("c2").unwrap(), 2);
    assert_eq!(fw.remove_owner("c2").unwrap(), 0);
    let after = fw.rules().unwrap();
    assert!(
        other.iter().all(|o| after.iter().all(|(r, _)| r != o)),
        "{after:?}"
    );

    let (ok, listed) = nft(&["-a", "list", "table", "ip", &name]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains("ip saddr 10.198.0.0/24 ip daddr != 10.198.0.0/24 masquerade"),
        "{listed}"
    );
    assert!(
        listed.contains("fib daddr type local tcp dport 18080 dnat to 10.198.0.2:80"),
        "{listed}"
    );
    assert!(
        listed.contains("ip saddr 10.198.0.0/24 ip daddr 10.198.0.0/24 ct status dnat masquerade"),
        "{listed}"
    );
    assert!(
        listed.contains("ip saddr 127.0.0.0/8 ip daddr 10.198.0.0/24 masquerade"),
        "{listed}"
    );
    assert_eq!(masq.len(), 3);
    for m in &masq {
        assert!(
            listed.contains(&format!("# handle {}", m.handle)),
            "{listed}"
        );
    }

    for p in ports.iter().chain(&masq) {
        fw.remove(p).unwrap();
    }
    let (_, listed) = nft(&["list", "table", "ip", &name]);
    assert!(!listed.contains("masquerade"), "{listed}");
    assert!(!listed.contains("dnat"), "{listed}");
    // Removing a rule that is gone is an error naming it.
    let e = fw.remove(&masq[0]).unwrap_err();
    assert!(e.to_string().contains(&name), "{e}");

    fw.delete_table().unwrap();
    fw.delete_table().unwrap();
    let (ok, _) = nft(&["list", "table", "ip", &name]);
    assert!(!ok, "table still there");
    assert_eq!(other_tables(&name), before, "another table changed");
}
