use super::*;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn cidrs_parse_and_print() {
    assert_eq!(net("10.42.0.0/16").to_string(), "10.42.0.0/16");
    assert_eq!(net("10.42.0.0/16").size(), 65536);
    assert!(
        "10.42.1.0/16"
            .parse::<Ipv4Net>()
            .unwrap_err()
            .contains("host bits set (the network is 10.42.0.0/16)")
    );
    assert!(
        "10.42.0.0"
            .parse::<Ipv4Net>()
            .unwrap_err()
            .contains("not an IPv4 CIDR")
    );
    assert!(
        "10.42.0.0/33"
            .parse::<Ipv4Net>()
            .unwrap_err()
            .contains("over 32")
    );
    assert!(
        "ten/8"
            .parse::<Ipv4Net>()
            .unwrap_err()
            .contains("not an IPv4 address")
    );
    assert!(net("10.42.0.0/16").contains("10.42.255.1".parse().unwrap()));
    assert!(!net("10.42.0.0/16").contains("10.43.0.1".parse().unwrap()));
}

#[test]
fn blocks_are_the_lowest_free_ones() {
    let range = net("10.42.0.0/16");
    let b = assign_blocks(&range, 24, 3, &[]).unwrap();
    assert_eq!(
        b,
        vec![
            net("10.42.0.0/24"),
            net("10.42.1.0/24"),
            net("10.42.2.0/24")
        ]
    );
    // Held by other nodes, whatever their size: skipped.
    let taken = [
        net("10.42.1.128/25"),
        net("10.42.2.0/23"),
        net("192.168.0.0/24"),
    ];
    let b = assign_blocks(&range, 24, 3, &taken).unwrap();
    assert_eq!(
        b,
        vec![
            net("10.42.0.0/24"),
            net("10.42.4.0/24"),
            net("10.42.5.0/24")
        ]
    );
    // A taken range covering ours leaves nothing.
    assert!(assign_blocks(&range, 24, 1, &[net("10.0.0.0/8")]).is_none());
    assert_eq!(assign_blocks(&range, 24, 256, &[]).unwrap().len(), 256);
    assert!(assign_blocks(&range, 24, 257, &[]).is_none());
    let big = assign_blocks(&net("10.128.0.0/9"), 24, 5000, &[]).unwrap();
    assert_eq!(big[4999], net("10.147.135.0/24"));
}

#[test]
fn a_pool_hands_out_pod_addresses_lowest_first() {
    let mut p = Pool::new(net("10.42.3.0/24"));
    assert_eq!(p.free(), 254);
    assert_eq!(p.allocate(), Some("10.42.3.1".parse().unwrap()));
    assert_eq!(p.allocate(), Some("10.42.3.2".parse().unwrap()));
    p.release("10.42.3.1".parse().unwrap());
    assert_eq!(p.allocate(), Some("10.42.3.1".parse().unwrap()));
    // The network and broadcast addresses, and others' addresses, are never claimed.
    assert!(!p.claim("10.42.3.0".parse().unwrap()));
    assert!(!p.claim("10.42.3.255".parse().unwrap()));
    assert!(!p.claim("10.42.4.7".parse().unwrap()));
    assert!(p.claim("10.42.3.200".parse().unwrap()));
    assert!(!p.claim("10.42.3.200".parse().unwrap()));
    let mut small = Pool::new(net("10.42.0.8/29"));
    let got: Vec<_> = std::iter::from_fn(|| small.allocate()).collect();
    assert_eq!(got.len(), 6);
    assert_eq!(got[0], "10.42.0.9".parse::<Ipv4Addr>().unwrap());
    assert_eq!(got[5], "10.42.0.14".parse::<Ipv4Addr>().unwrap());
}

/// A small seeded generator (no proptest in the lock file): every failing
/// case is reproducible from the seed in its message.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// Property: under any sequence of allocations, claims and releases, no
/// address is held twice, every address is a pod address of the block, the
/// free count is exact, and a released address is the next handed out when
/// it is the lowest free one.
#[test]
fn property_the_pool_never_hands_out_an_address_twice_and_reuses_freed_ones() {
    for seed in 0..300 {
        let mut r = Rng(seed);
        let prefix = 24 + r.below(6) as u8;
        let block = Ipv4Net::new(Ipv4Addr::new(10, 42, r.below(256) as u8, 0), 24)
            .unwrap()
            .block(prefix, r.below(1 << (prefix - 24)));
        let mut pool = Pool::new(block);
        let mut held: std::collections::BTreeSet<Ipv4Addr> = Default::default();
        for step in 0..200 {
            let ctx = format!("seed {seed} step {step} block {block}");
            match r.below(4) {
                0 | 1 => match pool.allocate() {
                    Some(ip) => {
                        assert!(held.insert(ip), "{ctx}: {ip} handed out twice");
                        assert!(block.contains(ip), "{ctx}: {ip} outside");
                        assert_ne!(ip, block.addr(), "{ctx}: network address");
                        // Lowest first: nothing free below it.
                        let below = (u32::from(block.addr()) + 1..u32::from(ip))
                            .map(Ipv4Addr::from)
                            .all(|a| held.contains(&a));
                        assert!(below, "{ctx}: {ip} is not the lowest free");
                    }
                    None => assert_eq!(held.len() as u64, usable(&block), "{ctx}: pool says full"),
                },
                2 => {
                    let ip = Ipv4Addr::from(u32::from(block.addr()) + r.below(block.size()) as u32);
                    let claimed = pool.claim(ip);
                    let pod_addr = ip != block.addr()
                        && u64::from(u32::from(ip) - u32::from(block.addr())) != block.size() - 1;
                    assert_eq!(
                        claimed,
                        pod_addr && !held.contains(&ip),
                        "{ctx}: claim {ip}"
                    );
                    if claimed {
                        held.insert(ip);
                    }
                }
                _ => {
                    if let Some(&ip) = held.iter().nth(r.below(held.len().max(1) as u64) as usize) {
                        pool.release(ip);
                        held.remove(&ip);
                        let lowest_free = (u32::from(block.addr()) + 1..u32::from(ip))
                            .map(Ipv4Addr::from)
                            .all(|a| held.contains(&a));
                        if lowest_free {
                            let again = pool.allocate();
                            assert_eq!(again, Some(ip), "{ctx}: freed {ip} not reused");
                            held.insert(ip);
                        }
                    }
                }
            }
            assert_eq!(
                pool.free(),
                usable(&block) - held.len() as u64,
                "{ctx}: free count"
            );
        }
    }
}
