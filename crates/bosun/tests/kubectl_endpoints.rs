//! Endpoints and EndpointSlices, seen through the real kubectl against
//! `bosun server`: a Service's are exactly its ready pods (named target ports
//! resolved per pod), follow a pod turning not ready or going, are left alone
//! for a Service without a selector, and go with their Service; and a
//! Deployment on `bosun sim-nodes` behind a Service.

mod cluster;
mod common;

use std::collections::BTreeMap;

use cluster::{Cluster, wait_until};
use serde_json::{Value, json};

/// A pod no scheduler takes, bound to a node that does not exist, so that
/// nobody but the test sets its status.
fn pod(c: &Cluster, name: &str, app: &str, port: u16) {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\n\
         spec:\n  schedulerName: by-hand\n  nodeName: nowhere\n  containers:\n  \
         - name: app\n    image: nginx:1.27\n    ports: [{{name: http, containerPort: {port}}}]\n"
    );
    c.ok(&["apply", "-f", &c.file(&format!("{name}.yaml"), &yaml)]);
}

/// Sets the pod Running with `ip`, Ready or not, as a kubelet would.
fn status(c: &Cluster, name: &str, ip: &str, ready: bool) {
    let ready = if ready { "True" } else { "False" };
    let patch = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": ready}]}});
    c.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
}

/// The Endpoints' ready and not-ready addresses, each `ip:port`.
fn endpoints(c: &Cluster, name: &str) -> Option<(Vec<String>, Vec<String>)> {
    let ep = c.get(&["endpoints", name])?;
    let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
    for s in ep["subsets"].as_array().into_iter().flatten() {
        for p in s["ports"].as_array().into_iter().flatten() {
            let port = &p["port"];
            for a in s["addresses"].as_array().into_iter().flatten() {
                ready.push(format!("{}:{port}", a["ip"].as_str().unwrap()));
            }
            for a in s["notReadyAddresses"].as_array().into_iter().flatten() {
                not_ready.push(format!("{}:{port}", a["ip"].as_str().unwrap()));
            }
        }
    }
    ready.sort();
    not_ready.sort();
    Some((ready, not_ready))
}

/// The Service's EndpointSlices: each endpoint's `ip:port` and whether it is
/// ready.
fn slices(c: &Cluster, service: &str) -> BTreeMap<String, bool> {
    let list = c
        .get(&[
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={service}"),
        ])
        .unwrap();
    let mut out = BTreeMap::new();
    for sl in list["items"].as_array().unwrap() {
        for e in sl["endpoints"].as_array().into_iter().flatten() {
            for p in sl["ports"].as_array().into_iter().flatten() {
                let key = format!("{}:{}", e["addresses"][0].as_str().unwrap(), p["port"]);
                out.insert(key, e["conditions"]["ready"] == true);
            }
        }
    }
    out
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_service_has_exactly_its_ready_pods_as_endpoints() {
    let c = Cluster::start();
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {team: a}}\n\
               spec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n";
    c.ok(&["apply", "-f", &c.file("svc.yaml", svc)]);
    pod(&c, "a", "web", 8080);
    pod(&c, "b", "web", 8080);
    pod(&c, "c", "web", 9090);
    pod(&c, "other", "db", 8080);
    status(&c, "a", "10.1.0.1", true);
    status(&c, "b", "10.1.0.2", false);
    status(&c, "c", "10.1.0.3", true);
    status(&c, "other", "10.1.0.4", true);
    // "c" names its port "http" too, on 9090: the target port resolves per pod.
    let want = (
        strings(&["10.1.0.1:8080", "10.1.0.3:9090"]),
        strings(&["10.1.0.2:8080"]),
    );
    wait_until("the endpoints are the ready pods", || {
        endpoints(&c, "web").as_ref() == Some(&want)
    });
    let ep = c.get(&["endpoints", "web"]).unwrap();
    assert_eq!(
        ep["metadata"]["labels"],
        json!({"team": "a", "endpoints.kubernetes.io/managed-by": "endpoint-controller"})
    );
    let a = &ep["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .find(|a| a["ip"] == "10.1.0.1")
        .unwrap();
    assert_eq!(a["nodeName"], "nowhere");
    assert_eq!(a["targetRef"]["kind"], "Pod");
    assert_eq!(a["targetRef"]["name"], "a");

    let want_slices: BTreeMap<String, bool> = [
        ("10.1.0.1:8080", true),
        ("10.1.0.2:8080", false),
        ("10.1.0.3:9090", true),
    ]
    .iter()
    .map(|(k, r)| ((*k).to_owned(), *r))
    .collect();
    wait_until("the slices hold the pods", || {
        slices(&c, "web") == want_slices
    });
    let list = c
        .get(&["endpointslices", "-l", "kubernetes.io/service-name=web"])
        .unwrap();
    for sl in list["items"].as_array().unwrap() {
        assert_eq!(sl["addressType"], "IPv4");
        assert_eq!(
            sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        let owner = &sl["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Service");
        assert_eq!(owner["name"], "web");
        assert_eq!(owner["controller"], true);
    }
    // The tables kubectl prints.
    let table = c.ok(&["get", "endpoints", "web"]);
    assert!(table.contains("10.1.0.1:8080,10.1.0.3:9090"), "{table}");
    let table = c.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    assert!(
        table.contains("ADDRESSTYPE") && table.contains("IPv4"),
        "{table}"
    );
    // kubectl 1.33 describes a Service from its slices.
    let described = c.ok(&["describe", "service", "web"]);
    assert!(
        described.contains("10.1.0.1:8080") && described.contains("10.1.0.3:9090"),
        "{described}"
    );
    assert!(!described.contains("10.1.0.2"), "{described}");

    // "a" turns not ready, "b" ready; "c" goes.
    status(&c, "a", "10.1.0.1", false);
    status(&c, "b", "10.1.0.2", true);
    c.ok(&["delete", "pod", "c"]);
    let want = (strings(&["10.1.0.2:8080"]), strings(&["10.1.0.1:8080"]));
    wait_until("the endpoints follow the pods", || {
        endpoints(&c, "web").as_ref() == Some(&want)
    });
    let want_slices: BTreeMap<String, bool> = [("10.1.0.1:8080", false), ("10.1.0.2:8080", true)]
        .iter()
        .map(|(k, r)| ((*k).to_owned(), *r))
        .collect();
    wait_until("the slices follow the pods", || {
        slices(&c, "web") == want_slices
    });

    // The Service goes: its Endpoints and slices go with it.
    c.ok(&["delete", "service", "web"]);
    wait_until("the endpoints and slices are gone", || {
        c.get(&["endpoints", "web"]).is_none() && slices(&c, "web").is_empty()
    });
}

#[test]
fn a_service_without_a_selector_keeps_the_endpoints_it_is_given() {
    let c = Cluster::start();
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\n\
                spec:\n  ports: [{port: 80}]\n---\n\
                apiVersion: v1\nkind: Endpoints\nmetadata: {name: ext}\n\
                subsets: [{addresses: [{ip: 192.0.2.10}], ports: [{port: 80}]}]\n";
    c.ok(&["apply", "-f", &c.file("ext.yaml", yaml)]);
    pod(&c, "a", "web", 8080);
    status(&c, "a", "10.1.0.1", true);
    // A Service with a selector, made after, is served: the controller has
    // looked at the cluster since the selector-less one was made.
    let web = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n\
               spec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n";
    c.ok(&["apply", "-f", &c.file("web.yaml", web)]);
    wait_until("web has its endpoints", || {
        endpoints(&c, "web").is_some_and(|(r, _)| r == strings(&["10.1.0.1:8080"]))
    });
    assert_eq!(
        endpoints(&c, "ext"),
        Some((strings(&["192.0.2.10:80"]), Vec::new()))
    );
    let ep = c.get(&["endpoints", "ext"]).unwrap();
    assert!(ep["metadata"]["labels"].is_null(), "{ep}");
    assert!(slices(&c, "ext").is_empty());
}

#[test]
fn a_deployment_behind_a_service() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(3);
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n\
                spec:\n  replicas: 4\n  selector: {matchLabels: {app: web}}\n  template:\n    \
                metadata: {labels: {app: web}}\n    spec:\n      containers:\n      \
                - {name: web, image: nginx:1.27, ports: [{name: http, containerPort: 80}]}\n\
                ---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n\
                spec:\n  selector: {app: web}\n  ports: [{port: 8080, targetPort: http}]\n";
    c.ok(&["apply", "-f", &c.file("web.yaml", yaml)]);
    let ready_ips = |c: &Cluster| -> Vec<String> {
        let pods = c.get(&["pods", "-l", "app=web"]).unwrap();
        let mut ips: Vec<String> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c: &Value| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|p| p["status"]["podIP"].as_str().map(|ip| format!("{ip}:80")))
            .collect();
        ips.sort();
        ips
    };
    wait_until("4 pods are ready and are the endpoints", || {
        let ips = ready_ips(&c);
        ips.len() == 4 && endpoints(&c, "web") == Some((ips.clone(), Vec::new()))
    });
    wait_until("the slices hold the same pods", || {
        let ips = ready_ips(&c);
        let got: Vec<String> = slices(&c, "web")
            .into_iter()
            .filter(|(_, r)| *r)
            .map(|(k, _)| k)
            .collect();
        ips.len() == 4 && got == ips
    });
    c.ok(&["scale", "deployment", "web", "--replicas=2"]);
    wait_until("the endpoints shrink with the deployment", || {
        let ips = ready_ips(&c);
        ips.len() == 2
            && endpoints(&c, "web") == Some((ips.clone(), Vec::new()))
            && slices(&c, "web").into_keys().collect::<Vec<_>>() == ips
    });
}
