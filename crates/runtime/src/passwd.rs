//! `/etc/passwd` lookups, read directly rather than through NSS: getpwuid may load
//! shared libraries, which costs more than a whole container start, and inside a
//! container only the file exists anyway.

/// Field `index` (0 = name, 5 = home) of `uid`'s entry in the /etc/passwd that this
/// process sees (the host's in the runtime, the container's after pivot_root).
pub(crate) fn field(uid: u32, index: usize) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let matches = fields.get(2)?.parse::<u32>().ok()? == uid;
        matches
            .then(|| fields.get(index).map(|f| (*f).to_owned()))
            .flatten()
    })
}
