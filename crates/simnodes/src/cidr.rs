//! IPv4 ranges, the pod CIDR each node gets, and each node's allocator of pod
//! addresses. Pure: the caller says which ranges other nodes already hold.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `10.42.0.0/16`: host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    base: u32,
    prefix: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Net, String> {
        if prefix > 32 {
            return Err(format!("prefix length /{prefix} is over 32"));
        }
        let base = u32::from(addr);
        if base & !mask(prefix) != 0 {
            return Err(format!(
                "{addr}/{prefix} has host bits set (the network is {}/{prefix})",
                Ipv4Addr::from(base & mask(prefix))
            ));
        }
        Ok(Ipv4Net { base, prefix })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// How many addresses, 2^(32-prefix).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    fn last(&self) -> u32 {
        self.base + (self.size() - 1) as u32
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base
    }

    fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }

    /// The address `offset` into the network.
    fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + offset)
    }

    /// How many `/prefix` blocks the network holds (0 if they are bigger).
    pub fn blocks(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        }
    }

    fn block(&self, prefix: u8, index: u64) -> Ipv4Net {
        let size = 1u64 << (32 - u32::from(prefix));
        Ipv4Net {
            base: self.base + (index * size) as u32,
            prefix,
        }
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Ipv4Net, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an IPv4 CIDR like 10.42.0.0/16"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{s:?}: {prefix:?} is not a prefix length"))?;
        Ipv4Net::new(addr, prefix).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix)
    }
}

/// Pod addresses a block offers: all but its network and broadcast address.
pub(crate) fn usable(block: &Ipv4Net) -> u64 {
    block.size().saturating_sub(2)
}

/// `wanted` blocks of `/prefix` from `range`, the lowest ones that overlap
/// none of `taken` (what other nodes hold); `None` if the range runs out.
pub(crate) fn assign_blocks(
    range: &Ipv4Net,
    prefix: u8,
    wanted: usize,
    taken: &[Ipv4Net],
) -> Option<Vec<Ipv4Net>> {
    let mut taken: Vec<Ipv4Net> = taken
        .iter()
        .filter(|t| t.overlaps(range))
        .copied()
        .collect();
    taken.sort();
    let mut out = Vec::with_capacity(wanted);
    let mut t = 0;
    for index in 0..range.blocks(prefix) {
        if out.len() == wanted {
            break;
        }
        let b = range.block(prefix, index);
        // `taken` is sorted by base: skip those wholly before this block.
        while t < taken.len() && taken[t].last() < b.base {
            t += 1;
        }
        if taken[t..]
            .iter()
            .take_while(|x| x.base <= b.last())
            .any(|x| x.overlaps(&b))
        {
            continue;
        }
        out.push(b);
    }
    (out.len() == wanted).then_some(out)
}

/// The addresses of one block, handed out lowest first; a freed address is
/// the first to be handed out again.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    net: Ipv4Net,
    /// Bit `i` set: offset `i` is in use.
    used: Vec<u64>,
    free: u64,
}

impl Pool {
    pub(crate) fn new(net: Ipv4Net) -> Pool {
        let mut pool = Pool {
            net,
            used: vec![0; net.size().div_ceil(64) as usize],
            free: usable(&net),
        };
        // The network and broadcast addresses are never a pod's.
        pool.set(0, true);
        if net.size() > 1 {
            pool.set(net.size() - 1, true);
        }
        pool
    }

    /// Addresses left (what the tests check the bookkeeping by).
    #[cfg(test)]
    fn free(&self) -> u64 {
        self.free
    }

    fn is_set(&self, offset: u64) -> bool {
        self.used[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    fn set(&mut self, offset: u64, on: bool) {
        let word = &mut self.used[(offset / 64) as usize];
        if on {
            *word |= 1 << (offset % 64);
        } else {
            *word &= !(1 << (offset % 64));
        }
    }

    /// The lowest free address, now in use.
    pub(crate) fn allocate(&mut self) -> Option<Ipv4Addr> {
        let (w, word) = self
            .used
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)?;
        let offset = w as u64 * 64 + u64::from(word.trailing_ones());
        if offset >= self.net.size() {
            return None;
        }
        self.set(offset, true);
        self.free -= 1;
        Some(self.net.nth(offset as u32))
    }

    /// Marks `ip` in use (a pod that already has it); false if it is not a
    /// pod address of this block or is taken.
    pub(crate) fn claim(&mut self, ip: Ipv4Addr) -> bool {
        match self.offset(ip) {
            Some(o) if !self.is_set(o) => {
                self.set(o, true);
                self.free -= 1;
                true
            }
            _ => false,
        }
    }

    /// Gives `ip` back; an address not handed out is ignored.
    pub(crate) fn release(&mut self, ip: Ipv4Addr) {
        if let Some(o) = self.offset(ip)
            && self.is_set(o)
        {
            self.set(o, false);
            self.free += 1;
        }
    }

    /// The offset of a pod address of this block.
    fn offset(&self, ip: Ipv4Addr) -> Option<u64> {
        let o = u64::from(u32::from(ip).wrapping_sub(self.net.base));
        (self.net.contains(ip) && o != 0 && o != self.net.size() - 1).then_some(o)
    }
}

#[cfg(test)]
mod tests;
