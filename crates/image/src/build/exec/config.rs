//! The image config being built, kept as JSON so that fields the OCI spec
//! lacks but Docker images carry (`Healthcheck`, `Shell`, `OnBuild`) and
//! anything a base image set survive the build untouched.

use serde_json::{Map, Value, json};

/// Docker's default when an image sets none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone)]
pub(crate) struct ImageConfig {
    /// The whole config document (`architecture`, `os`, `config`, `rootfs`,
    /// `history`, ...).
    pub(crate) doc: Value,
}

impl ImageConfig {
    /// A config for `FROM scratch`.
    pub(crate) fn scratch() -> Self {
        Self {
            doc: json!({
                "architecture": crate::manifest::HOST_ARCH,
                "os": crate::manifest::HOST_OS,
                "config": {"Env": [format!("PATH={DEFAULT_PATH}")]},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
        }
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if !doc.is_object() {
            return Err("the image config is not a JSON object".into());
        }
        let mut me = Self { doc };
        // Each build starts its own history of layers from the base's.
        if !me.doc["history"].is_array() {
            me.doc["history"] = json!([]);
        }
        Ok(me)
    }

    fn config(&mut self) -> &mut Map<String, Value> {
        if !self.doc["config"].is_object() {
            self.doc["config"] = json!({});
        }
        self.doc["config"]
            .as_object_mut()
            .expect("made an object above")
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.doc.get("config").and_then(|c| c.get(key))
    }

    pub(crate) fn env(&self) -> Vec<(String, String)> {
        self.get("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv.to_owned(), String::new()),
            })
            .collect()
    }

    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_owned(),
            None => env.push((key.to_owned(), value.to_owned())),
        }
        let list: Vec<Value> = env.iter().map(|(k, v)| json!(format!("{k}={v}"))).collect();
        self.config().insert("Env".into(), Value::Array(list));
    }

    pub(crate) fn string(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn set(&mut self, key: &str, value: Value) {
        self.config().insert(key.to_owned(), value);
    }

    pub(crate) fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.get(key)?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    /// Adds `key` to a set-like object field (`ExposedPorts`, `Volumes`).
    pub(crate) fn insert_into(&mut self, field: &str, key: &str) {
        let config = self.config();
        let slot = config.entry(field).or_insert_with(|| json!({}));
        if !slot.is_object() {
            *slot = json!({});
        }
        slot.as_object_mut()
            .expect("made an object above")
            .insert(key.to_owned(), json!({}));
    }

    pub(crate) fn set_label(&mut self, key: &str, value: &str) {
        let config = self.config();
        let slot = config.entry("Labels").or_insert_with(|| json!({}));
        if !slot.is_object() {
            *slot = json!({});
        }
        slot.as_object_mut()
            .expect("made an object above")
            .insert(key.to_owned(), json!(value));
    }

    pub(crate) fn push_onbuild(&mut self, trigger: &str) {
        let config = self.config();
        let slot = config.entry("OnBuild").or_insert_with(|| json!([]));
        if !slot.is_array() {
            *slot = json!([]);
        }
        slot.as_array_mut()
            .expect("made an array above")
            .push(json!(trigger));
    }

    pub(crate) fn workdir(&self) -> String {
        self.string("WorkingDir").unwrap_or_else(|| "/".to_owned())
    }

    pub(crate) fn shell(&self) -> Vec<String> {
        self.strings("Shell")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    pub(crate) fn push_history(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        let mut entry =
            json!({"created": created, "created_by": created_by, "comment": "bosun build"});
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        if let Some(h) = self.doc["history"].as_array_mut() {
            h.push(entry);
        }
    }

    /// The final document with `diff_ids` and the creation time set.
    pub(crate) fn finish(&self, diff_ids: &[String], created: &str) -> Value {
        let mut doc = self.doc.clone();
        doc["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        doc["created"] = json!(created);
        doc["architecture"] = json!(crate::manifest::HOST_ARCH);
        doc["os"] = json!(crate::manifest::HOST_OS);
        doc
    }

    /// What of the config a RUN step sees, for its cache key.
    pub(crate) fn run_view(&self) -> Value {
        json!({
            "env": self.get("Env"),
            "user": self.get("User"),
            "workdir": self.get("WorkingDir"),
            "shell": self.get("Shell"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_replaced_in_place_and_unknown_fields_survive() {
        let base = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","A=1"],"Healthcheck":{"Test":["NONE"]}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let mut c = ImageConfig::from_bytes(base).unwrap();
        c.set_env("A", "2");
        c.set_env("B", "x=y");
        assert_eq!(
            c.env(),
            [
                ("PATH".to_owned(), "/bin".to_owned()),
                ("A".to_owned(), "2".to_owned()),
                ("B".to_owned(), "x=y".to_owned())
            ]
        );
        let done = c.finish(&["sha256:00".into()], "2026-01-01T00:00:00Z");
        assert_eq!(done["config"]["Healthcheck"]["Test"][0], "NONE");
        assert_eq!(done["rootfs"]["diff_ids"][0], "sha256:00");
        assert_eq!(c.shell(), ["/bin/sh", "-c"]);
        assert_eq!(c.workdir(), "/");
    }
}
