//! A minimal stub resolver: A then AAAA queries over UDP to the container's resolv.conf
//! nameservers, with its search list and `ndots`, as glibc orders them. Sockets are created on
//! the calling thread, which is in the container's network namespace.
//!
//! Not done: TCP fallback for truncated answers, `rotate`, `attempts`, EDNS. A name is tried
//! once per nameserver; the first answer with addresses wins.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What resolv.conf says, as far as a stub resolver cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvConf {
    pub(crate) nameservers: Vec<IpAddr>,
    pub(crate) search: Vec<String>,
    pub(crate) ndots: usize,
    pub(crate) timeout: Duration,
}

impl ResolvConf {
    pub(crate) fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: DEFAULT_TIMEOUT,
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // glibc ignores a `%zone` suffix here only for link-local; we drop it.
                    if let Some(ip) = words.next().and_then(|w| w.split('%').next()?.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                // The last of `search` and `domain` wins, as in glibc.
                Some("search") => {
                    conf.search = words.map(|w| w.trim_end_matches('.').to_string()).collect()
                }
                Some("domain") => {
                    conf.search = words
                        .take(1)
                        .map(|w| w.trim_end_matches('.').to_string())
                        .collect()
                }
                Some("options") => {
                    for opt in words {
                        if let Some(n) = opt
                            .strip_prefix("ndots:")
                            .and_then(|n| n.parse::<usize>().ok())
                        {
                            conf.ndots = n.min(15);
                        }
                        if let Some(n) = opt
                            .strip_prefix("timeout:")
                            .and_then(|n| n.parse::<u64>().ok())
                        {
                            conf.timeout = Duration::from_secs(n.clamp(1, 30));
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }

    /// Fully qualified names to try, in order.
    pub(crate) fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(abs) = name.strip_suffix('.') {
            return vec![abs.to_string()];
        }
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_string())).collect()
        }
    }
}

#[derive(Debug)]
pub(crate) enum LookupError {
    /// Every server answered, none with an address.
    NoAddress,
    Timeout,
    Io {
        server: SocketAddr,
        source: io::Error,
    },
}

/// Looks `name` up through `servers` (with their ports, 53 in real use).
pub(crate) fn lookup(
    conf: &ResolvConf,
    servers: &[SocketAddr],
    name: &str,
    deadline: Instant,
) -> Result<Vec<IpAddr>, LookupError> {
    let mut last_err = LookupError::NoAddress;
    for fqdn in conf.candidates(name) {
        let Some(qname) = encode_name(&fqdn) else {
            continue;
        };
        for qtype in [TYPE_A, TYPE_AAAA] {
            for server in servers {
                match query(*server, &qname, qtype, conf.timeout, deadline) {
                    Ok(Answer::Addresses(a)) if !a.is_empty() => return Ok(a),
                    // NXDOMAIN or no data: the next name or type, not the next server.
                    Ok(_) => break,
                    Err(LookupError::Timeout) if Instant::now() >= deadline => {
                        return Err(LookupError::Timeout)
                    }
                    Err(e) => last_err = e,
                }
            }
        }
    }
    Err(last_err)
}

enum Answer {
    Addresses(Vec<IpAddr>),
    NoSuchName,
}

fn query(
    server: SocketAddr,
    qname: &[u8],
    qtype: u16,
    per_try: Duration,
    deadline: Instant,
) -> Result<Answer, LookupError> {
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => LookupError::Timeout,
        _ => LookupError::Io { server, source },
    };
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(bind).map_err(io_err)?;
    sock.connect(server).map_err(io_err)?;
    let id = query_id();
    let mut msg = Vec::with_capacity(qname.len() + 16);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    msg.extend_from_slice(qname);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes()); // class IN
    let until = deadline.min(Instant::now() + per_try);
    sock.send(&msg).map_err(io_err)?;
    let mut buf = [0u8; 1500];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LookupError::Timeout);
        }
        sock.set_read_timeout(Some(left)).map_err(io_err)?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        // A stray or forged datagram is ignored, not an error.
        if let Some(answer) = parse_response(&buf[..n], id, qtype) {
            return Ok(answer);
        }
    }
}

fn query_id() -> u16 {
    // Not security-relevant (the socket is connected, the answer is a probe target), but it
    // must differ between queries: take it from the clock and a counter.
    use std::sync::atomic::{AtomicU16, Ordering};
    static N: AtomicU16 = AtomicU16::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (t as u16) ^ ((t >> 16) as u16) ^ N.fetch_add(0x9e37, Ordering::Relaxed)
}

pub(crate) fn encode_name(name: &str) -> Option<Vec<u8>> {
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Some(out)
}

/// Skips a possibly compressed name; returns the offset after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l => pos += 1 + l as usize,
        }
    }
}

fn parse_response(msg: &[u8], id: u16, qtype: u16) -> Option<Answer> {
    let u16_at = |p: usize| Some(u16::from_be_bytes([*msg.get(p)?, *msg.get(p + 1)?]));
    if u16_at(0)? != id || msg.get(2)? & 0x80 == 0 {
        return None;
    }
    let rcode = msg.get(3)? & 0x0f;
    if rcode == 3 {
        return Some(Answer::NoSuchName);
    }
    if rcode != 0 {
        // SERVFAIL, REFUSED...: no address from this server.
        return Some(Answer::Addresses(Vec::new()));
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        pos = skip_name(msg, pos)?;
        let (rtype, rdlen) = (u16_at(pos)?, u16_at(pos + 8)? as usize);
        let data = msg.get(pos + 10..pos + 10 + rdlen)?;
        match (rtype, data.len()) {
            (TYPE_A, 4) if qtype == TYPE_A => {
                addrs.push(IpAddr::from(<[u8; 4]>::try_from(data).ok()?))
            }
            (TYPE_AAAA, 16) if qtype == TYPE_AAAA => {
                addrs.push(IpAddr::from(<[u8; 16]>::try_from(data).ok()?))
            }
            _ => {}
        }
        pos += 10 + rdlen;
    }
    Some(Answer::Addresses(addrs))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::thread;

    use super::*;

    /// A fake DNS server on 127.0.0.1: answers `table` names (A only, via a CNAME-free answer),
    /// NXDOMAIN otherwise; serves at most `max` queries, then stops.
    pub(crate) fn fake_dns(
        table: Vec<(&'static str, Ipv4Addr)>,
        max: usize,
    ) -> (SocketAddr, thread::JoinHandle<Vec<String>>) {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let addr = sock.local_addr().unwrap();
        let h = thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 512];
            for _ in 0..max {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    break;
                };
                let q = &buf[..n];
                let end = skip_name(q, 12).unwrap();
                let mut name = Vec::new();
                let mut p = 12;
                while q[p] != 0 {
                    let l = q[p] as usize;
                    name.push(String::from_utf8_lossy(&q[p + 1..p + 1 + l]).to_string());
                    p += 1 + l;
                }
                let name = name.join(".");
                let qtype = u16::from_be_bytes([q[end], q[end + 1]]);
                seen.push(format!("{name}/{qtype}"));
                let hit = table.iter().find(|(n, _)| *n == name).map(|(_, ip)| *ip);
                let mut r = q[..end + 4].to_vec();
                r[2] |= 0x80; // QR
                match (hit, qtype) {
                    (Some(ip), TYPE_A) => {
                        r[7] = 1; // ANCOUNT
                        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
                        r.extend_from_slice(&ip.octets());
                    }
                    (Some(_), _) => {}
                    (None, _) => r[3] |= 3, // NXDOMAIN
                }
                let _ = sock.send_to(&r, peer);
            }
            seen
        });
        (addr, h)
    }

    #[test]
    fn resolv_conf_and_search_order() {
        let c = ResolvConf::parse(
            "# k8s\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nsearch ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2\n",
        );
        assert_eq!(
            c.nameservers,
            [
                "10.96.0.10".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert_eq!(c.ndots, 5);
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(
            c.candidates("api"),
            [
                "api.ns.svc.cluster.local",
                "api.svc.cluster.local",
                "api.cluster.local",
                "api"
            ]
        );
        assert_eq!(c.candidates("example.com."), ["example.com"]);
        let c = ResolvConf::parse("domain corp\n");
        assert_eq!(c.candidates("a.b"), ["a.b", "a.b.corp"]);
    }

    #[test]
    fn lookup_through_search_list() {
        let (server, h) = fake_dns(vec![("api.ns.svc", Ipv4Addr::new(10, 0, 0, 7))], 1);
        let conf = ResolvConf::parse("search ns.svc\noptions ndots:2\n");
        let ips = lookup(
            &conf,
            &[server],
            "api",
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(ips, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))]);
        drop(ips);
        let seen = h.join().unwrap();
        assert_eq!(seen, ["api.ns.svc/1"]);
    }

    #[test]
    fn lookup_nxdomain_everywhere() {
        let (server, h) = fake_dns(vec![], 4);
        let conf = ResolvConf::parse("search a\n");
        let e = lookup(
            &conf,
            &[server],
            "x",
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(e, LookupError::NoAddress), "{e:?}");
        assert_eq!(h.join().unwrap(), ["x.a/1", "x.a/28", "x/1", "x/28"]);
    }

    #[test]
    fn silent_server_times_out() {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let conf = ResolvConf::parse("");
        let e = lookup(
            &conf,
            &[sock.local_addr().unwrap()],
            "x",
            Instant::now() + Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(e, LookupError::Timeout), "{e:?}");
    }

    #[test]
    fn names() {
        assert_eq!(encode_name("a.bc").unwrap(), b"\x01a\x02bc\x00");
        assert!(encode_name("a..b").is_none());
        assert!(encode_name(&"x".repeat(64)).is_none());
        assert!(parse_response(b"\x00\x01", 1, TYPE_A).is_none());
    }
}
