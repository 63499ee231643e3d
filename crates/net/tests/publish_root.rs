//! Root test of the whole slice: IPAM address, bridge, veth into a netns, a
//! published port; an HTTP GET from the host to the gateway's published port
//! reaches busybox httpd inside the netns. Then everything is torn down.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use bosun_net::{
    Attachment, Firewall, IfName, Ipam, PortMapping, Protocol, Subnet, attach, delete_bridge,
    detach, ensure_bridge,
};
use bosun_testkit::BUSYBOX;

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        run(&["ip", "netns", "del", &self.0]);
    }
}

struct Cleanup {
    bridge: String,
    veths: [String; 2],
    table: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for l in self.veths.iter().chain([&self.bridge]) {
            if run(&["ip", "link", "show", "dev", l]).status.success() {
                run(&["ip", "link", "del", "dev", l]);
            }
        }
        run(&["nft", "delete", "table", "ip", &self.table]);
    }
}

/// A minimal HTTP/1.0 GET of `/index.html`, returning the whole response.
fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The server we started; killed by its own pid.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn published_port_reaches_the_container_from_the_host() {
    bosun_testkit::require_root();
    let tag = format!("{:x}", std::process::id() % 0xfffff);
    let ns = format!("bosun-pub-{tag}");
    let bridge = IfName::new(&format!("bpb{tag}")).unwrap();
    let veth = IfName::new(&format!("bpv{tag}")).unwrap();
    let client_ns = format!("bosun-cli-{tag}");
    let client_veth = IfName::new(&format!("bpc{tag}")).unwrap();
    let table = format!("bosun_p{tag}");
    let _cleanup = Cleanup {
        bridge: bridge.to_string(),
        veths: [veth.to_string(), client_veth.to_string()],
        table: table.clone(),
    };
    let subnet = Subnet::new(Ipv4Addr::new(10, 199, 10, 0), 24).unwrap();
    let state = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(state.path(), subnet).unwrap();

    assert!(run(&["ip", "netns", "add", &ns]).status.success());
    let netns = Netns(ns.clone());
    ensure_bridge(&bridge, subnet).unwrap();
    let ip = ipam.allocate("web").unwrap();
    attach(&Attachment {
        bridge: bridge.clone(),
        host_veth: veth.clone(),
        netns: PathBuf::from("/run/netns").join(&ns),
        address: ip,
        subnet,
    })
    .unwrap();

    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from the netns\n").unwrap();
    let _server = Server(
        Command::new("ip")
            .args([
                "netns", "exec", &ns, BUSYBOX, "httpd", "-f", "-p", "80", "-h",
            ])
            .arg(www.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let fw = Firewall::new(&table).unwrap();
    fw.ensure().unwrap();
    let masq = fw.masquerade(subnet, None).unwrap();
    let mapping = PortMapping {
        protocol: Protocol::Tcp,
        host_port: 18081,
        container: ip,
        container_port: 80,
    };
    mapping.check_host_port_free().unwrap();
    let rules = fw.publish(&mapping, "web").unwrap();

    // The host's own connection to a local address goes through our output
    // chain's DNAT. Retry while httpd starts listening (not a timing assertion:
    // the test fails only if it never answers).
    let addr = SocketAddr::from((subnet.gateway(), 18081));
    let mut last = Err(std::io::Error::other("not tried"));
    for _ in 0..50 {
        last = http_get(addr);
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let response = last.unwrap_or_else(|e| panic!("GET {addr} never succeeded: {e}"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello from the netns\n"), "{response}");

    // The host's own loopback (output DNAT, route_localnet, masquerade).
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, 18081));
    let response = http_get(lo).unwrap_or_else(|e| panic!("GET {lo}: {e}"));
    assert!(response.ends_with("hello from the netns\n"), "{response}");

    // Hairpin: another container on the same bridge reaches the published port
    // through the gateway address (prerouting DNAT, then masquerade). Where
    // br_netfilter is loaded (bridge-nf-call-iptables=1) conntrack un-NATs the
    // bridged reply even without our hairpin rule; firewall_root checks the
    // rule itself.
    assert!(run(&["ip", "netns", "add", &client_ns]).status.success());
    let client = Netns(client_ns.clone());
    let client_ip = ipam.allocate("client").unwrap();
    attach(&Attachment {
        bridge: bridge.clone(),
        host_veth: client_veth.clone(),
        netns: PathBuf::from("/run/netns").join(&client_ns),
        address: client_ip,
        subnet,
    })
    .unwrap();
    let gw = subnet.gateway().to_string();
    let mut nc = Command::new("ip")
        .args([
            "netns", "exec", &client_ns, BUSYBOX, "nc", "-w", "5", &gw, "18081",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    nc.stdin
        .take()
        .unwrap()
        .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .unwrap();
    let out = nc.wait_with_output().unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.ends_with("hello from the netns\n"),
        "hairpin GET from {client_ip}: {out:?}"
    );
    assert!(detach(&client_veth).unwrap());
    drop(client);

    for r in rules.iter().chain(&masq) {
        fw.remove(r).unwrap();
    }
    // With the rule gone, the same GET no longer reaches the container.
    let after = http_get(addr);
    assert!(after.is_err(), "still published: {after:?}");

    fw.delete_table().unwrap();
    assert!(detach(&veth).unwrap());
    assert!(delete_bridge(&bridge).unwrap());
    assert!(ipam.release(ip).unwrap());
    drop(netns);
    assert!(
        !run(&["ip", "link", "show", "dev", veth.as_str()])
            .status
            .success()
    );
    assert!(
        !run(&["nft", "list", "table", "ip", &table])
            .status
            .success()
    );
}
