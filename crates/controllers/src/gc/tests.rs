use super::*;

fn cm() -> &'static Resource {
    resource::find("", "v1", "configmaps").unwrap()
}

fn node(uid: &str, owners: &[(&str, bool)]) -> Node {
    Node {
        obj: ObjRef {
            res: cm(),
            namespace: Some("default".into()),
            name: format!("cm-{uid}"),
            uid: uid.into(),
        },
        owners: owners
            .iter()
            .map(|(o, block)| OwnerRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: format!("cm-{o}"),
                uid: (*o).into(),
                block: *block,
            })
            .collect(),
        finalizers: Vec::new(),
        deleting: false,
    }
}

fn deleting(mut n: Node, finalizers: &[&str]) -> Node {
    n.deleting = true;
    n.finalizers = finalizers.iter().map(|f| (*f).to_owned()).collect();
    n
}

#[test]
fn a_dependent_whose_owners_are_gone_is_collected() {
    let plan = plan(&[node("b", &[("a", false)])]);
    assert!(
        matches!(&plan[..], [Action::Delete { obj, policy: "Background", gone }]
            if obj.uid == "b" && gone.len() == 1 && gone[0].uid == "a"),
        "{plan:?}"
    );
    // With a live owner, nothing happens.
    assert!(super::plan(&[node("a", &[]), node("b", &[("a", true)])]).is_empty());
    // One of two owners gone: only that reference goes.
    let plan = super::plan(&[node("a", &[]), node("c", &[("a", false), ("x", false)])]);
    assert!(
        matches!(&plan[..], [Action::RemoveOwners { obj, uids, .. }] if obj.uid == "c" && uids == &["x"]),
        "{plan:?}"
    );
}

#[test]
fn foreground_waits_for_blocking_dependents() {
    let owner = deleting(node("a", &[]), &[FOREGROUND]);
    let plan = super::plan(&[owner.clone(), node("b", &[("a", true)])]);
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert!(matches!(&plan[0], Action::Delete { obj, policy: "Foreground", .. } if obj.uid == "b"));
    // A dependent held by its own finalizer still blocks, and is not deleted again.
    let held = deleting(node("b", &[("a", true)]), &["example.com/hold"]);
    assert!(super::plan(&[owner.clone(), held]).is_empty());
    // Non-blocking dependents are deleted but do not hold the owner.
    let plan = super::plan(&[owner.clone(), node("b", &[("a", false)])]);
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert!(plan.contains(&Action::RemoveFinalizer {
        obj: owner.obj.clone(),
        finalizer: FOREGROUND
    }));
}

#[test]
fn orphan_removes_the_references_then_the_finalizer() {
    let owner = deleting(node("a", &[]), &[ORPHAN]);
    let plan = super::plan(&[owner.clone(), node("b", &[("a", true)])]);
    assert!(
        matches!(&plan[..], [Action::RemoveOwners { obj, uids, gone }] if obj.uid == "b" && uids == &["a"] && gone.is_empty()),
        "{plan:?}"
    );
    assert_eq!(
        super::plan(&[owner.clone(), node("b", &[])]),
        vec![Action::RemoveFinalizer {
            obj: owner.obj,
            finalizer: ORPHAN
        }]
    );
}

/// A small deterministic generator (xorshift), so the property test needs no
/// extra crate and every failure names its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Does `action` to `world` as the API server would (owner checks against
/// the world itself, which is always current here).
fn apply(world: &mut Vec<Node>, action: &Action) {
    let present = |w: &Vec<Node>, uid: &str| w.iter().any(|n| n.obj.uid == uid);
    let find = |w: &mut Vec<Node>, uid: &str| w.iter().position(|n| n.obj.uid == uid);
    match action {
        Action::Delete { obj, policy, gone } => {
            if gone.iter().any(|o| present(world, &o.uid)) {
                return;
            }
            let Some(i) = find(world, &obj.uid) else {
                return;
            };
            let n = &mut world[i];
            n.finalizers.retain(|f| f != FOREGROUND && f != ORPHAN);
            if *policy == "Foreground" {
                n.finalizers.push(FOREGROUND.into());
            }
            if n.finalizers.is_empty() {
                world.remove(i);
            } else {
                n.deleting = true;
            }
        }
        Action::RemoveOwners { obj, uids, gone } => {
            if gone.iter().any(|o| present(world, &o.uid)) {
                return;
            }
            if let Some(i) = find(world, &obj.uid) {
                world[i].owners.retain(|o| !uids.contains(&o.uid));
            }
        }
        Action::RemoveFinalizer { obj, finalizer } => {
            if let Some(i) = find(world, &obj.uid) {
                world[i].finalizers.retain(|f| f != finalizer);
                if world[i].deleting && world[i].finalizers.is_empty() {
                    world.remove(i);
                }
            }
        }
    }
}

/// Random forests of owners (some owners missing, some deletions under way
/// with each policy, some objects held by a finalizer of their own): plan and
/// apply until nothing is left to do, then check what Kubernetes promises.
#[test]
fn collection_converges_and_keeps_what_is_owned() {
    for seed in 1..500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let count = 1 + rng.below(8);
        let mut world = Vec::new();
        for i in 0..count {
            let uid = format!("u{i}");
            // Owners among earlier objects, or one never created ("x").
            let mut owners = Vec::new();
            for _ in 0..rng.below(3) {
                let o = if i > 0 && rng.below(4) > 0 {
                    format!("u{}", rng.below(i))
                } else {
                    "x".to_owned()
                };
                if !owners.iter().any(|(u, _): &(String, bool)| *u == o) {
                    owners.push((o, rng.below(2) == 0));
                }
            }
            let refs: Vec<(&str, bool)> = owners.iter().map(|(u, b)| (u.as_str(), *b)).collect();
            let mut n = node(&uid, &refs);
            let hold = rng.below(6) == 0;
            match rng.below(6) {
                0 => n = deleting(n, &[FOREGROUND]),
                1 => n = deleting(n, &[ORPHAN]),
                _ => {}
            }
            if hold {
                n.finalizers.push("example.com/hold".into());
            }
            world.push(n);
        }
        let start = world.clone();
        let mut rounds = 0;
        loop {
            let actions = plan(&world);
            if actions.is_empty() {
                break;
            }
            for a in &actions {
                apply(&mut world, a);
            }
            rounds += 1;
            assert!(rounds < 100, "seed {seed}: no fixed point\n{start:#?}");
        }
        let present: HashSet<&str> = world.iter().map(|n| n.obj.uid.as_str()).collect();
        for n in &world {
            // Nothing that stays names an owner that is gone...
            assert!(
                n.deleting || n.owners.iter().all(|o| present.contains(o.uid.as_str())),
                "seed {seed}: dangling owner left on {n:?}\n{start:#?}"
            );
            // ...and only objects held by a finalizer of their own, or by a
            // blocking dependent so held, are still being deleted.
            if n.deleting && !n.has("example.com/hold") {
                assert!(
                    n.has(FOREGROUND)
                        && world.iter().any(|d| d.deleting
                            && d.owners.iter().any(|o| o.uid == n.obj.uid && o.block)),
                    "seed {seed}: {n:?} is stuck\n{world:#?}\nfrom {start:#?}"
                );
            }
        }
        // An object nobody deleted, whose owners all existed and none of which
        // was deleted, is never touched.
        for s in &start {
            let untouched_chain =
                !s.deleting && s.owners.is_empty() && !start.iter().any(|n| n.deleting);
            if untouched_chain {
                assert!(
                    world.contains(s),
                    "seed {seed}: {s:?} was collected\n{start:#?}"
                );
            }
        }
    }
}
