//! `cargo xtask openapi PATH/_definitions.json`: regenerate
//! `crates/apiserver/schemas/kubernetes.json`, the schemas the API server
//! publishes (OpenAPI v2 and v3) and validates with.
//!
//! The input is upstream Kubernetes' own schemas as PyPI's `kubernetes-validate`
//! ships them, already turned into JSON Schema:
//! `pip download --no-deps kubernetes-validate==1.37.0`, unzip, and pass
//! `kubernetes_validate/kubernetes-json-schema/v1.33.0-local/_definitions.json`
//! (the version the server reports). This turns them back into OpenAPI v2
//! definitions (`type: [T, "null"]` → `T`, `oneOf` int-or-string and quantity
//! back to strings, no `enum` on `apiVersion`/`kind`, refs to `#/definitions/`)
//! and keeps only the served kinds and what they reference, so the server
//! embeds a few hundred kilobytes instead of every group's schemas.

use std::collections::{BTreeMap, BTreeSet};

use bosun_api::resource::RESOURCES;
use serde_json::{Map, Value};

/// Where the artifact goes, from the workspace root.
const OUT: &str = "crates/apiserver/schemas/kubernetes.json";

/// Served through subresources and request bodies rather than as resources.
const EXTRA_ROOTS: &[&str] = &[
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.api.core.v1.Binding",
    "io.k8s.api.policy.v1.Eviction",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
];

pub(crate) fn generate(input: Option<&str>) -> Result<String, String> {
    let input = input.ok_or("name the _definitions.json of kubernetes-validate's v1.33.0-local")?;
    let text = std::fs::read_to_string(input).map_err(|e| format!("{input}: {e}"))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{input}: {e}"))?;
    let defs = doc["$defs"]
        .as_object()
        .ok_or_else(|| format!("{input}: no $defs"))?;

    let mut roots: Vec<String> = EXTRA_ROOTS.iter().map(|s| (*s).to_owned()).collect();
    for r in RESOURCES {
        let found = defs.iter().find(|(_, d)| {
            d["x-kubernetes-group-version-kind"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|g| g["group"] == r.group && g["version"] == r.version && g["kind"] == r.kind)
        });
        match found {
            Some((name, _)) => roots.push(name.clone()),
            None => {
                return Err(format!(
                    "no schema for {}/{} {}",
                    r.group, r.version, r.kind
                ));
            }
        }
    }

    // Every definition the roots reach.
    let mut keep = BTreeSet::new();
    while let Some(name) = roots.pop() {
        if !keep.insert(name.clone()) {
            continue;
        }
        let def = defs
            .get(&name)
            .ok_or_else(|| format!("{name} is referenced but missing"))?;
        let mut refs = Vec::new();
        collect_refs(def, &mut refs);
        roots.extend(refs);
    }

    let mut out: BTreeMap<&str, Value> = BTreeMap::new();
    for name in &keep {
        out.insert(name, schema(&defs[name.as_str()]));
    }
    // One definition per line: small diffs when upstream changes.
    let mut text = String::from(
        "{\"source\":\"kubernetes-validate 1.37.0, v1.33.0-local\",\"definitions\":{\n",
    );
    let lines: Vec<String> = out
        .iter()
        .map(|(name, def)| format!("{}:{def}", Value::from(*name)))
        .collect();
    text.push_str(&lines.join(",\n"));
    text.push_str("\n}}\n");
    std::fs::write(OUT, &text).map_err(|e| format!("{OUT}: {e}"))?;
    Ok(format!(
        "openapi: {} definitions, {} bytes in {OUT}",
        out.len(),
        text.len()
    ))
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(name) = x.as_str().and_then(|s| s.split("#/$defs/").nth(1)) {
                        out.push(name.to_owned());
                    }
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// One JSON Schema (as kubernetes-validate writes it) as an OpenAPI v2 schema.
fn schema(v: &Value) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    let mut out = Map::new();
    if let Some(Value::Array(alts)) = m.get("oneOf") {
        let types: Vec<&str> = alts
            .iter()
            .filter_map(|a| a["type"].as_array().and_then(|t| t[0].as_str()))
            .collect();
        out.insert("type".into(), "string".into());
        if types.contains(&"integer") {
            out.insert("format".into(), "int-or-string".into());
        }
    }
    for (k, x) in m {
        match k.as_str() {
            "oneOf" | "enum" => {}
            "type" => {
                let t = match x {
                    Value::Array(ts) => {
                        let ts: Vec<&Value> = ts.iter().filter(|t| *t != "null").collect();
                        match ts.as_slice() {
                            [one] => (*one).clone(),
                            _ => Value::Array(ts.into_iter().cloned().collect()),
                        }
                    }
                    other => other.clone(),
                };
                out.insert(k.clone(), t);
            }
            "$ref" => {
                let name = x.as_str().and_then(|s| s.split("#/$defs/").nth(1));
                let r = name.map_or_else(|| x.clone(), |n| format!("#/definitions/{n}").into());
                out.insert(k.clone(), r);
            }
            "properties" => {
                let props = x
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(p, s)| (p.clone(), schema(s)))
                    .collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" => {
                out.insert(k.clone(), schema(x));
            }
            _ => {
                out.insert(k.clone(), x.clone());
            }
        }
    }
    Value::Object(out)
}
