//! The embedded DNS of user-defined networks: a UDP server on the network's
//! gateway address that answers A queries for the names of the containers
//! on that network (name, aliases, short id, hostname) and forwards every
//! other query to the host's resolvers. Containers on such networks get the
//! gateway as their only nameserver.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

/// How long answers may be cached (Docker's embedded DNS uses 600 s).
const TTL: u32 = 600;

/// A question we can answer ourselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    pub id: u16,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question section ends in the packet.
    pub end: usize,
    /// The client's recursion-desired bit.
    pub rd: bool,
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// The single question of a standard query, if that is what `packet` is.
pub(crate) fn parse_query(packet: &[u8]) -> Option<Question> {
    if packet.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    let qdcount = u16::from_be_bytes([packet[4], packet[5]]);
    // A query (QR=0), standard opcode, one question.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *packet.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // No compression in a question we accept.
        if len > 63 {
            return None;
        }
        let label = packet.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
        if i > 255 + 12 {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*packet.get(i)?, *packet.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*packet.get(i + 2)?, *packet.get(i + 3)?]);
    Some(Question {
        id,
        name: labels.join("."),
        qtype,
        qclass,
        end: i + 4,
        rd: flags & 0x0100 != 0,
    })
}

/// The answer to `q` (asked in `packet`) with `ips`; `rcode` 3 is NXDOMAIN.
pub(crate) fn answer(packet: &[u8], q: &Question, ips: &[Ipv4Addr], rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.end + ips.len() * 16);
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, AA, RD as asked, RA, and the code.
    let flags: u16 = 0x8000 | 0x0400 | if q.rd { 0x0100 } else { 0 } | 0x0080 | u16::from(rcode);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&packet[12..q.end]);
    for ip in ips {
        // The name is a pointer to the question's (offset 12).
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// Looks names up among the containers of one network.
pub(crate) type Lookup = Arc<dyn Fn(&str) -> Vec<Ipv4Addr> + Send + Sync>;

/// The host's resolvers, which unknown names go to.
pub(crate) fn upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next()?.parse::<Ipv4Addr>().ok())
                .flatten()
        })
        .map(|ip| SocketAddr::from((ip, 53)))
        .collect()
}

/// Serve DNS on `addr` until the task is aborted.
pub(crate) async fn serve(socket: UdpSocket, lookup: Lookup, upstreams: Vec<SocketAddr>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let packet = buf[..n].to_vec();
        let Some(q) = parse_query(&packet) else {
            continue;
        };
        let ours = if q.qclass == CLASS_IN && matches!(q.qtype, TYPE_A | TYPE_AAAA) {
            let ips = lookup(&q.name);
            (!ips.is_empty()).then_some(ips)
        } else {
            None
        };
        match ours {
            Some(ips) => {
                // Containers have IPv4 addresses only: AAAA gets no records.
                let ips = if q.qtype == TYPE_A { ips } else { Vec::new() };
                let _ = socket.send_to(&answer(&packet, &q, &ips, 0), from).await;
            }
            None => {
                let socket = socket.clone();
                let upstreams = upstreams.clone();
                tokio::spawn(async move {
                    let reply = forward(&packet, &upstreams).await;
                    let reply = reply.unwrap_or_else(|| answer(&packet, &q, &[], 3));
                    let _ = socket.send_to(&reply, from).await;
                });
            }
        }
    }
}

/// Ask the host's resolvers, one after the other, two seconds each.
async fn forward(packet: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let Ok(sock) = UdpSocket::bind("0.0.0.0:0").await else {
            continue;
        };
        if sock.send_to(packet, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
        {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        p
    }

    #[test]
    fn parses_and_answers() {
        let p = query("Web", TYPE_A);
        let q = parse_query(&p).expect("a query");
        assert_eq!(q.name, "web");
        assert_eq!(q.qtype, TYPE_A);
        let a = answer(&p, &q, &[Ipv4Addr::new(10, 90, 0, 2)], 0);
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &[10, 90, 0, 2]);
        let nx = answer(&p, &q, &[], 3);
        assert_eq!(nx[3] & 0xf, 3);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(parse_query(&[1, 2, 3]), None);
        let mut p = query("web", TYPE_A);
        p[2] |= 0x80; // a response, not a query
        assert_eq!(parse_query(&p), None);
        let mut cut = query("web", TYPE_A);
        cut.truncate(cut.len() - 3);
        assert_eq!(parse_query(&cut), None);
    }
}
