//! A tiny DNS server on 127.0.0.1 for the real engine: nginx's resolvers (the `wasm{}` one for
//! every callout here) never read `/etc/hosts`, so a test world's host names (`mock-idp`,
//! `cloudrun-orders`, …) are answered from a fixed table, and every other name gets NXDOMAIN at
//! once (Kong's DNS client answers an unknown name the same way, so callouts to it fail with
//! `resolver failure` instead of waiting for a timeout).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Record type A, class IN.
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// Answers' TTL: short, so that a test never depends on nginx's cache.
const TTL_SECONDS: u32 = 1;

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    /// `127.0.0.1:PORT` (UDP).
    pub addr: String,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    /// Serves `names` (lower-case host name → IPv4) on a free UDP port of 127.0.0.1.
    pub fn start(names: BTreeMap<String, Ipv4Addr>) -> Result<DnsServer> {
        let socket = UdpSocket::bind("127.0.0.1:0").context("binding the test DNS server")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = socket.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = answer(buf.get(..n).unwrap_or_default(), &names) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        Ok(DnsServer { addr, stop })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The question's name (lower-case, dotted) and where the question ends.
fn question(query: &[u8]) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression pointers never appear in a question we answer
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    Some((labels.join("."), at + 4))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

/// The response to one query: an A record from `names`, an empty answer for other types of a
/// known name, NXDOMAIN otherwise. `None` for what is not a single-question query.
fn answer(query: &[u8], names: &BTreeMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    if u16_at(query, 4)? != 1 || query.get(2)? & 0x80 != 0 {
        return None;
    }
    let (name, end) = question(query)?;
    let qtype = u16_at(query, end - 4)?;
    let qclass = u16_at(query, end - 2)?;
    let found = names.get(name.trim_end_matches('.'));
    let mut out = query.get(..end)?.to_vec();
    // QR, opcode 0, AA, RD copied; RA; rcode 0 or 3 (NXDOMAIN).
    let rd = query.get(2)? & 0x01;
    out[2] = 0x84 | rd;
    out[3] = if found.is_some() { 0x80 } else { 0x83 };
    let record = found.filter(|_| qtype == TYPE_A && qclass == CLASS_IN);
    // QDCOUNT 1, ANCOUNT 0/1, NSCOUNT 0, ARCOUNT 0.
    out[4..12].copy_from_slice(&[0, 1, 0, u8::from(record.is_some()), 0, 0, 0, 0]);
    if let Some(ip) = record {
        out.extend_from_slice(&[0xc0, 0x0c]); // the name: a pointer to the question's
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL_SECONDS.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn answers_known_names_and_nxdomain_for_others() {
        let names = BTreeMap::from([("mock-idp".to_string(), Ipv4Addr::new(127, 9, 8, 1))]);
        let dns = DnsServer::start(names).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];

        client
            .send_to(&query("Mock-IdP", TYPE_A), &dns.addr)
            .unwrap();
        let n = client.recv(&mut buf).unwrap();
        let reply = &buf[..n];
        assert_eq!(&reply[..2], &[0x12, 0x34], "same id");
        assert_eq!(reply[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16_at(reply, 6), Some(1), "one answer");
        assert_eq!(&reply[n - 4..], &[127, 9, 8, 1]);

        client.send_to(&query("mock-idp", 28), &dns.addr).unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(buf[3] & 0x0f, 0, "AAAA of a known name: NOERROR");
        assert_eq!(u16_at(&buf[..n], 6), Some(0), "and no answer");

        client
            .send_to(&query("nowhere.invalid", TYPE_A), &dns.addr)
            .unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(buf[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(u16_at(&buf[..n], 6), Some(0));
    }
}
