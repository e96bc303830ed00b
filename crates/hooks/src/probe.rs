//! The handlers that need no process in the container: httpGet and tcpSocket.
//!
//! Everything here is blocking and meant to run on a dedicated thread that has joined the
//! container's network namespace (never on an async worker, which sits in the host's). Sockets
//! are made by the `connect` closure the caller passes, so the same code runs against a loopback
//! server in tests.
//!
//! Names are resolved with the container's own /etc/hosts and resolv.conf contents (a small
//! UDP stub resolver, see `dns.rs`). HTTPS does not verify certificates (`tls.rs`).

use std::{
    io::{self, Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use crate::{
    dns::{self, LookupError, ResolvConf},
    handler::{Handler, HttpGet, Scheme, TcpSocket},
    output::HookFailure,
    tls,
};

/// Bound on what is read of a response, status line, headers and body together.
pub(crate) const RESPONSE_LIMIT: usize = 10 * 1024;
/// Redirects followed (same host only), as Go's http client and kubelet.
pub(crate) const MAX_REDIRECTS: usize = 10;

/// Creates a connected socket; runs on the caller's thread (in the container's netns).
pub type Connector<'a> = dyn FnMut(SocketAddr, Duration) -> io::Result<TcpStream> + 'a;

/// `TcpStream::connect_timeout`: a [`Connector`] for a thread already in the right netns.
pub fn connect_direct(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, timeout)
}

/// The container's resolver configuration, read from its root filesystem by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResolverFiles<'a> {
    /// Content of the container's /etc/hosts.
    pub hosts: &'a str,
    /// Content of the container's /etc/resolv.conf.
    pub resolv_conf: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot resolve {host:?}: not in the container's /etc/hosts, and its resolv.conf has no nameserver")]
    NoNameserver { host: String },
    #[error("cannot resolve {host:?}: not in the container's /etc/hosts, and nameservers {nameservers} have no address for it")]
    NameNotFound { host: String, nameservers: String },
    #[error("cannot resolve {host:?}: nameserver {server}: {source}")]
    Dns {
        host: String,
        server: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("exchange with {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("timed out")]
    Timeout,
    #[error("malformed HTTP response from {addr}: {reason}")]
    BadResponse {
        addr: SocketAddr,
        reason: &'static str,
    },
    #[error("TLS with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("stopped after {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("redirect to an unusable location {location:?}")]
    BadRedirect { location: String },
}

/// Resolves `host`: an IP literal as is, else the container's hosts file, else DNS over UDP to
/// its resolv.conf nameservers (port 53, sockets made on the calling thread).
pub(crate) fn resolve_host(
    host: &str,
    files: &ResolverFiles<'_>,
    deadline: Instant,
) -> Result<Vec<IpAddr>, ProbeError> {
    resolve_with_port(host, files, 53, deadline)
}

fn resolve_with_port(
    host: &str,
    files: &ResolverFiles<'_>,
    dns_port: u16,
    deadline: Instant,
) -> Result<Vec<IpAddr>, ProbeError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let wanted = bare.strip_suffix('.').unwrap_or(bare);
    let mut found = Vec::new();
    for line in files.hosts.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|name| name.eq_ignore_ascii_case(wanted)) && !found.contains(&ip) {
            found.push(ip);
        }
    }
    if !found.is_empty() {
        return Ok(found);
    }
    let conf = ResolvConf::parse(files.resolv_conf);
    if conf.nameservers.is_empty() {
        return Err(ProbeError::NoNameserver {
            host: host.to_string(),
        });
    }
    let servers: Vec<SocketAddr> = conf
        .nameservers
        .iter()
        .map(|ip| SocketAddr::new(*ip, dns_port))
        .collect();
    match dns::lookup(&conf, &servers, bare, deadline) {
        Ok(ips) => Ok(ips),
        Err(LookupError::Timeout) => Err(ProbeError::Timeout),
        Err(LookupError::Io { server, source }) => Err(ProbeError::Dns {
            host: host.to_string(),
            server,
            source,
        }),
        Err(LookupError::NoAddress) => Err(ProbeError::NameNotFound {
            host: host.to_string(),
            nameservers: conf
                .nameservers
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The container's default address for a handler without `host`: an address of the interface
/// that carries the default route (IPv4 routes first), skipping loopback and link-local
/// addresses; else 127.0.0.1. Call it on the thread that joined the container's network
/// namespace: it reads that thread's `/proc/thread-self/net/{route,ipv6_route}` and asks the
/// kernel for the interface addresses (getifaddrs, over netlink, also per thread).
pub(crate) fn default_address() -> IpAddr {
    let route = std::fs::read_to_string("/proc/thread-self/net/route").unwrap_or_default();
    let route6 = std::fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap_or_default();
    pick_default_address(&route, &route6, &interface_addresses())
}

/// Interface name and address of every configured IPv4/IPv6 address.
fn interface_addresses() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read, then free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: the family says which sockaddr type ifa_addr points to.
        let ip = match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
            }
            libc::AF_INET6 => {
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::from(sin6.sin6_addr.s6_addr)
            }
            _ => continue,
        };
        out.push((name, ip));
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    out
}

fn usable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

/// The choice behind [`default_address`], from the route tables' text and the addresses.
fn pick_default_address(route: &str, route6: &str, addrs: &[(String, IpAddr)]) -> IpAddr {
    // /proc/net/route: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    let v4_ifaces = route.lines().skip(1).filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0])
    });
    // /proc/net/ipv6_route: dest plen src plen nexthop metric refcnt use flags iface
    let v6_ifaces = route6.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo")
            .then(|| f[9])
    });
    for (iface, want_v4) in v4_ifaces
        .map(|i| (i, true))
        .chain(v6_ifaces.map(|i| (i, false)))
    {
        let hit = addrs
            .iter()
            .filter(|(name, ip)| name == iface && ip.is_ipv4() == want_v4 && usable(ip))
            .map(|(_, ip)| *ip)
            .next();
        if let Some(ip) = hit {
            return ip;
        }
    }
    IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
}

fn remaining(deadline: Instant) -> Result<Duration, ProbeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ProbeError::Timeout)
    } else {
        Ok(left)
    }
}

fn connect_any(
    ips: &[IpAddr],
    port: u16,
    connect: &mut Connector<'_>,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), ProbeError> {
    let mut last = None;
    for ip in ips {
        let addr = SocketAddr::new(*ip, port);
        match connect(addr, remaining(deadline)?) {
            Ok(s) => return Ok((s, addr)),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(ProbeError::Timeout),
            Err(source) => last = Some(ProbeError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or(ProbeError::Timeout))
}

/// tcpSocket: success is an accepted connection.
pub(crate) fn tcp_check(
    t: &TcpSocket,
    default_host: IpAddr,
    files: &ResolverFiles<'_>,
    connect: &mut Connector<'_>,
    deadline: Instant,
) -> Result<SocketAddr, ProbeError> {
    let ips = match &t.host {
        Some(h) => resolve_host(h, files, deadline)?,
        None => vec![default_host],
    };
    let (_stream, addr) = connect_any(&ips, t.port, connect, deadline)?;
    Ok(addr)
}

/// The last response of an httpGet (after same-host redirects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpResponse {
    pub status: u16,
    /// The URL that gave this response.
    pub url: String,
    /// The body as read, at most what fits in [`RESPONSE_LIMIT`] with the headers.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// 200-399; stricter than kubelet, which accepts any status for a lifecycle hook.
    pub(crate) fn is_success(&self) -> bool {
        (200..400).contains(&self.status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    scheme: Scheme,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn url(&self) -> String {
        let scheme = if self.scheme == Scheme::Https {
            "https"
        } else {
            "http"
        };
        format!(
            "{scheme}://{}{}",
            authority(&self.host, self.port),
            self.path
        )
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// httpGet: one GET, following redirects to the same host (at most [`MAX_REDIRECTS`]).
/// A redirect to another host is not followed: its 3xx response is the result (as kubelet).
pub(crate) fn http_get(
    h: &HttpGet,
    default_host: IpAddr,
    files: &ResolverFiles<'_>,
    connect: &mut Connector<'_>,
    deadline: Instant,
) -> Result<HttpResponse, ProbeError> {
    let host = h.host.clone().unwrap_or_else(|| default_host.to_string());
    let mut target = Target {
        scheme: h.scheme,
        host,
        port: h.port,
        path: h.path.clone(),
    };
    let origin = target.host.clone();
    let mut redirects = 0;
    loop {
        let ips = resolve_host(&target.host, files, deadline)?;
        let (stream, addr) = connect_any(&ips, target.port, connect, deadline)?;
        let request = build_request(&target, &h.headers);
        let (status, location, body) = match target.scheme {
            Scheme::Http => exchange(&mut Plain(stream), addr, &request, deadline)?,
            Scheme::Https => {
                let mut tls =
                    tls::client(stream, &target.host).map_err(|source| ProbeError::Tls {
                        addr,
                        source: Box::new(source),
                    })?;
                exchange(&mut tls, addr, &request, deadline)?
            }
        };
        let response = HttpResponse {
            status,
            url: target.url(),
            body,
        };
        let Some(location) = location.filter(|_| matches!(status, 301 | 302 | 303 | 307 | 308))
        else {
            return Ok(response);
        };
        let next =
            resolve_location(&target, &location).ok_or(ProbeError::BadRedirect { location })?;
        if !next.host.eq_ignore_ascii_case(&origin) {
            log::info!(
                "httpGet hook: not following redirect from {} to another host {}",
                response.url,
                next.url()
            );
            return Ok(response);
        }
        if redirects == MAX_REDIRECTS {
            return Err(ProbeError::TooManyRedirects);
        }
        redirects += 1;
        target = next;
    }
}

fn build_request(t: &Target, headers: &[(String, String)]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut req = format!("GET {} HTTP/1.1\r\n", t.path);
    if !has("Host") {
        let default_port = if t.scheme == Scheme::Https { 443 } else { 80 };
        if t.port == default_port {
            let h = if t.host.contains(':') {
                format!("[{}]", t.host)
            } else {
                t.host.clone()
            };
            req.push_str(&format!("Host: {h}\r\n"));
        } else {
            req.push_str(&format!("Host: {}\r\n", authority(&t.host, t.port)));
        }
    }
    if !has("User-Agent") {
        req.push_str(concat!(
            "User-Agent: lifecycle-shim/",
            env!("CARGO_PKG_VERSION"),
            "\r\n"
        ));
    }
    if !has("Accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    // One request per connection: the server's close ends the body when there is no length.
    req.push_str("Connection: close\r\n\r\n");
    req.into_bytes()
}

/// A connection to exchange a request over: plain TCP or TLS on top of it.
trait Transport: Read + Write {
    fn socket(&self) -> &TcpStream;
}

struct Plain(TcpStream);

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Plain {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Transport for Plain {
    fn socket(&self) -> &TcpStream {
        &self.0
    }
}

impl Transport for tls::TlsStream {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// Sends the request, reads at most [`RESPONSE_LIMIT`] bytes: (status, Location, body).
fn exchange(
    stream: &mut impl Transport,
    addr: SocketAddr,
    request: &[u8],
    deadline: Instant,
) -> Result<(u16, Option<String>, Vec<u8>), ProbeError> {
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ProbeError::Timeout,
        _ => ProbeError::Io { addr, source },
    };
    stream
        .socket()
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(io_err)?;
    // With TLS the handshake happens here; its reads need a timeout too.
    stream
        .socket()
        .set_read_timeout(Some(remaining(deadline)?))
        .map_err(io_err)?;
    stream.write_all(request).map_err(io_err)?;
    stream.flush().map_err(io_err)?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let mut head_end = None;
    let mut content_length = None;
    let mut chunked = false;
    loop {
        if let Some((_, end)) = head_end {
            let body = &buf[end..];
            if content_length.is_some_and(|n: usize| body.len() >= n)
                || (chunked && (body.starts_with(b"0\r\n\r\n") || body.ends_with(b"\r\n0\r\n\r\n")))
            {
                break;
            }
        }
        if buf.len() >= RESPONSE_LIMIT {
            break;
        }
        // Once the status is known, a body that stops coming (a server that ignores
        // `Connection: close`, a slow stream) ends the read instead of failing the probe.
        let left = match remaining(deadline) {
            Ok(left) => left,
            Err(_) if head_end.is_some() => break,
            Err(e) => return Err(e),
        };
        stream
            .socket()
            .set_read_timeout(Some(left))
            .map_err(io_err)?;
        let want = (RESPONSE_LIMIT - buf.len()).min(chunk.len());
        let n = match stream.read(&mut chunk[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) if head_end.is_some() => break,
            Err(e) => return Err(io_err(e)),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if head_end.is_none() {
            if let Some((pos, body_start)) = end_of_head(&buf) {
                head_end = Some((pos, body_start));
                content_length =
                    header_value(&buf[..pos], "content-length").and_then(|v| v.trim().parse().ok());
                chunked = header_value(&buf[..pos], "transfer-encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            }
        }
    }
    let bad = |reason| ProbeError::BadResponse { addr, reason };
    let (head_len, end) = head_end.ok_or_else(|| {
        bad(if buf.len() >= RESPONSE_LIMIT {
            "headers exceed 10 KiB"
        } else {
            "connection closed before the end of the headers"
        })
    })?;
    let head = &buf[..head_len];
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = status_line.strip_suffix(b"\r").unwrap_or(status_line);
    let status_line =
        std::str::from_utf8(status_line).map_err(|_| bad("status line is not text"))?;
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad("no HTTP/1.x status line"));
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| bad("invalid status code"))?;
    let location = header_value(head, "location").map(|v| v.trim().to_string());
    let mut body = if chunked {
        dechunk(&buf[end..])
    } else {
        buf[end..].to_vec()
    };
    if let Some(n) = content_length.filter(|_| !chunked) {
        body.truncate(n);
    }
    Ok((status, location, body))
}

/// Chunked transfer coding to data, keeping what arrived of a truncated body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    while let Some(eol) = find(raw, b"\r\n") {
        let size_field = String::from_utf8_lossy(&raw[..eol]);
        let size_hex = size_field.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let data = &raw[eol + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        if take < size || data.len() < size + 2 {
            break;
        }
        raw = &data[size + 2..];
    }
    out
}

/// Where the response head ends: (length of the head without its terminating empty line,
/// start of the body). Lines may end in CRLF or, as RFC 9112 allows and Go's client accepts, a
/// bare LF (busybox httpd passes CGI output through that way).
fn end_of_head(buf: &[u8]) -> Option<(usize, usize)> {
    let mut at = 0;
    while let Some(nl) = buf[at..].iter().position(|&b| b == b'\n') {
        let line_end = at + nl + 1;
        let rest = &buf[line_end..];
        if rest.starts_with(b"\r\n") {
            return Some((line_end, line_end + 2));
        }
        if rest.starts_with(b"\n") {
            return Some((line_end, line_end + 1));
        }
        at = line_end;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_value(head: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    text.split('\n').skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Resolves a Location header against the current target (absolute, scheme-relative,
/// absolute-path and relative-path forms).
fn resolve_location(base: &Target, loc: &str) -> Option<Target> {
    if loc.is_empty() || loc.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    let (scheme, rest) = if let Some(r) = loc.strip_prefix("http://") {
        (Scheme::Http, Some(r))
    } else if let Some(r) = loc.strip_prefix("https://") {
        (Scheme::Https, Some(r))
    } else if let Some(r) = loc.strip_prefix("//") {
        (base.scheme, Some(r))
    } else {
        (base.scheme, None)
    };
    if let Some(rest) = rest {
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (auth, path) = rest.split_at(split);
        let default_port = if scheme == Scheme::Https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => default_port,
                None => return None,
            };
            (h.to_string(), port)
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()?),
                None => (auth.to_string(), default_port),
            }
        };
        if host.is_empty() || port == 0 {
            return None;
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        return Some(Target {
            scheme,
            host,
            port,
            path,
        });
    }
    let path = if loc.starts_with('/') {
        loc.to_string()
    } else {
        let base_path = base.path.split('?').next().unwrap_or("/");
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{loc}")
    };
    Some(Target {
        scheme,
        host: base.host.clone(),
        port: base.port,
        path,
    })
}

/// The result of running an httpGet or tcpSocket handler with [`run_probe`].
#[derive(Debug)]
pub struct ProbeRun {
    /// The handler with its real target, for messages and records:
    /// `httpGet http://10.0.0.5:8080/stop`, `tcpSocket 10.0.0.5:5432`.
    pub summary: String,
    /// What the hook "printed": the response body (httpGet), for the output buffer.
    pub output: Vec<u8>,
    pub result: Result<(), HookFailure>,
}

/// Runs an httpGet or tcpSocket handler on the calling thread, which must have joined the
/// container's network namespace; `None` for exec and sleep. A handler without `host` goes to
/// the container's address on its default-route interface (loopback and link-local skipped),
/// else 127.0.0.1. Blocks until done or `deadline` (then fails with `timed out`).
pub fn run_probe(
    handler: &Handler,
    files: &ResolverFiles<'_>,
    connect: &mut Connector<'_>,
    deadline: Instant,
) -> Option<ProbeRun> {
    let needs_default = match handler {
        Handler::HttpGet(h) => h.host.is_none(),
        Handler::TcpSocket(t) => t.host.is_none(),
        _ => return None,
    };
    let default_host = if needs_default {
        default_address()
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    run_probe_with(handler, default_host, files, connect, deadline)
}

fn run_probe_with(
    handler: &Handler,
    default_host: IpAddr,
    files: &ResolverFiles<'_>,
    connect: &mut Connector<'_>,
    deadline: Instant,
) -> Option<ProbeRun> {
    match handler {
        Handler::HttpGet(h) => {
            let target = Target {
                scheme: h.scheme,
                host: h.host.clone().unwrap_or_else(|| default_host.to_string()),
                port: h.port,
                path: h.path.clone(),
            };
            let summary = format!("httpGet {}", target.url());
            Some(match http_get(h, default_host, files, connect, deadline) {
                Ok(resp) => {
                    let result = if resp.is_success() {
                        Ok(())
                    } else {
                        Err(HookFailure::HttpStatus(resp.status))
                    };
                    ProbeRun {
                        summary,
                        output: resp.body,
                        result,
                    }
                }
                Err(e) => ProbeRun {
                    summary,
                    output: Vec::new(),
                    result: Err(HookFailure::Probe(e)),
                },
            })
        }
        Handler::TcpSocket(t) => {
            let host = t.host.clone().unwrap_or_else(|| default_host.to_string());
            let summary = format!("tcpSocket {}", authority(&host, t.port));
            let result = tcp_check(t, default_host, files, connect, deadline)
                .map(drop)
                .map_err(HookFailure::Probe);
            Some(ProbeRun {
                summary,
                output: Vec::new(),
                result,
            })
        }
        Handler::Exec { .. } | Handler::Sleep { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::BufRead,
        net::{Ipv4Addr, TcpListener},
        sync::mpsc,
        thread,
    };

    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// Serves the given canned responses, one per connection, on 127.0.0.1; sends each request
    /// head back over the channel. Stops after the list (bounded), or when nobody connects for 5 s.
    fn serve(responses: Vec<Vec<u8>>) -> (u16, mpsc::Receiver<String>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for resp in responses {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = io::BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let _ = tx.send(head);
                let mut s = stream;
                let _ = s.write_all(&resp);
            }
        });
        (port, rx)
    }

    fn get(path: &str, port: u16, headers: Vec<(String, String)>) -> HttpGet {
        HttpGet {
            path: path.into(),
            port,
            host: Some("127.0.0.1".into()),
            scheme: Scheme::Http,
            headers,
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn run(h: &HttpGet) -> Result<HttpResponse, ProbeError> {
        http_get(
            h,
            LOCAL,
            &ResolverFiles::default(),
            &mut connect_direct,
            soon(),
        )
    }

    #[test]
    fn ok_with_headers_and_body() {
        let (port, rx) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello-ignored".to_vec(),
        ]);
        let h = get("/stop?now=1", port, vec![("X-Token".into(), "abc".into())]);
        let r = run(&h).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.is_success());
        assert_eq!(r.body, b"hello");
        assert_eq!(r.url, format!("http://127.0.0.1:{port}/stop?now=1"));
        let req = rx.recv().unwrap();
        assert!(req.starts_with("GET /stop?now=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("Host: 127.0.0.1:{port}\r\n")));
        assert!(req.contains("X-Token: abc\r\n"));
        assert!(req.contains("Connection: close\r\n"));
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        // busybox httpd passes a CGI script's `echo` lines through with bare LFs.
        let (port, _rx) = serve(vec![
            b"HTTP/1.0 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\nok-ignored".to_vec(),
            b"HTTP/1.1 404 Not Found\r\nX-A: b\n\r\n".to_vec(),
        ]);
        let r = run(&get("/", port, vec![])).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let r = run(&get("/", port, vec![])).unwrap();
        assert_eq!(r.status, 404, "mixed line endings are parsed");
    }

    #[test]
    fn host_header_override_and_error_status() {
        let (port, rx) = serve(vec![
            b"HTTP/1.0 500 Internal Server Error\r\n\r\nboom".to_vec()
        ]);
        let h = get("/", port, vec![("Host".into(), "example.test".into())]);
        let r = run(&h).unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.is_success()),
            (500, &b"boom"[..], false)
        );
        let req = rx.recv().unwrap();
        assert!(
            req.contains("Host: example.test\r\n") && req.matches("Host:").count() == 1,
            "{req}"
        );
    }

    #[test]
    fn same_host_redirects_are_followed() {
        let (port, rx) = serve(vec![
            b"HTTP/1.1 302 Found\r\nLocation: /a/next\r\nContent-Length: 0\r\n\r\n".to_vec(),
            b"HTTP/1.1 307 Again\r\nLocation: final\r\n\r\n".to_vec(),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        ]);
        let r = run(&get("/start", port, vec![])).unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(r.url, format!("http://127.0.0.1:{port}/a/final"));
        let paths: Vec<String> = rx
            .iter()
            .take(3)
            .map(|h| h.lines().next().unwrap().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "GET /start HTTP/1.1",
                "GET /a/next HTTP/1.1",
                "GET /a/final HTTP/1.1"
            ]
        );
    }

    #[test]
    fn other_host_redirect_is_not_followed() {
        let (port, _rx) = serve(vec![
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.test/x\r\n\r\n".to_vec(),
        ]);
        let r = run(&get("/", port, vec![])).unwrap();
        assert_eq!(r.status, 302);
        assert!(r.is_success());
    }

    #[test]
    fn redirect_loop_stops_after_ten() {
        let resp = b"HTTP/1.1 302 Found\r\nLocation: /again\r\n\r\n".to_vec();
        let (port, _rx) = serve(vec![resp; MAX_REDIRECTS + 1]);
        assert!(matches!(
            run(&get("/", port, vec![])),
            Err(ProbeError::TooManyRedirects)
        ));
    }

    #[test]
    fn response_is_bounded() {
        let mut resp = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        resp.extend(vec![b'z'; 64 * 1024]);
        let (port, _rx) = serve(vec![resp]);
        let r = run(&get("/", port, vec![])).unwrap();
        assert_eq!(
            r.body.len(),
            RESPONSE_LIMIT - "HTTP/1.1 200 OK\r\n\r\n".len()
        );
    }

    #[test]
    fn malformed_and_https_and_refused() {
        let (port, _rx) = serve(vec![b"SSH-2.0-nope\r\n\r\n".to_vec()]);
        let e = run(&get("/", port, vec![])).unwrap_err();
        assert!(e.to_string().contains("no HTTP/1.x status line"), "{e}");
        // HTTPS to a server that does not speak TLS: a TLS error, not a response.
        let (port, _rx) = serve(vec![b"HTTP/1.1 200 OK\r\n\r\n".to_vec()]);
        let mut h = get("/", port, vec![]);
        h.scheme = Scheme::Https;
        let e = run(&h).unwrap_err();
        assert!(matches!(e, ProbeError::Io { .. }), "{e}");
        // A port nobody listens on: bind, learn the port, close.
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = run(&get("/", closed, vec![])).unwrap_err();
        assert!(matches!(e, ProbeError::Connect { .. }), "{e}");
    }

    #[test]
    fn slow_server_times_out() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let h = get("/", port, vec![]);
        // Connected by the backlog, never answered.
        let e = http_get(
            &h,
            LOCAL,
            &ResolverFiles::default(),
            &mut connect_direct,
            Instant::now() + Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(e, ProbeError::Timeout), "{e}");
        drop(listener);
    }

    #[test]
    fn tcp_socket() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = TcpSocket { port, host: None };
        let addr = tcp_check(
            &t,
            LOCAL,
            &ResolverFiles::default(),
            &mut connect_direct,
            soon(),
        )
        .unwrap();
        assert_eq!(addr, SocketAddr::new(LOCAL, port));
        drop(listener);
        let e = tcp_check(
            &t,
            LOCAL,
            &ResolverFiles::default(),
            &mut connect_direct,
            soon(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("connect to 127.0.0.1:{port}: ")),
            "{e}"
        );
    }

    #[test]
    fn connector_is_used_and_hosts_file_resolves() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let files = ResolverFiles {
            hosts: "# c\n127.0.0.1 localhost\n127.0.0.1\tdb.local db # x\n",
            resolv_conf: "",
        };
        let mut seen = Vec::new();
        let mut connect = |a: SocketAddr, t: Duration| {
            seen.push(a);
            connect_direct(a, t)
        };
        let t = TcpSocket {
            port,
            host: Some("DB".into()),
        };
        tcp_check(&t, LOCAL, &files, &mut connect, soon()).unwrap();
        assert_eq!(seen, [SocketAddr::new(LOCAL, port)]);
    }

    #[test]
    fn resolver() {
        let files = ResolverFiles {
            hosts: "10.1.2.3 web web.ns.svc\nfe80::1 web\nbad-line\n",
            resolv_conf: "search ns.svc\n",
        };
        let t = soon();
        assert_eq!(
            resolve_host("192.0.2.1", &files, t).unwrap(),
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            resolve_host("[::1]", &files, t).unwrap(),
            ["::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(resolve_host("web", &files, t).unwrap().len(), 2);
        assert_eq!(resolve_host("WEB.ns.svc.", &files, t).unwrap().len(), 1);
        let e = resolve_host("api", &files, t).unwrap_err().to_string();
        assert_eq!(
            e,
            r#"cannot resolve "api": not in the container's /etc/hosts, and its resolv.conf has no nameserver"#
        );
    }

    #[test]
    fn resolver_falls_back_to_dns() {
        let (server, h) =
            crate::dns::tests::fake_dns(vec![("api.ns.svc", Ipv4Addr::new(127, 0, 0, 9))], 8);
        let files = ResolverFiles {
            hosts: "",
            resolv_conf: "nameserver 127.0.0.1\nsearch ns.svc\n",
        };
        let ips = resolve_with_port("api", &files, server.port(), soon()).unwrap();
        assert_eq!(ips, [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))]);
        let e = resolve_with_port("nope", &files, server.port(), soon())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"cannot resolve "nope": not in the container's /etc/hosts, and nameservers 127.0.0.1 have no address for it"#
        );
        drop(h);
    }

    #[test]
    fn default_address_choice() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let route6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n\
                      00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 net1\n";
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let addrs = vec![
            ("lo".to_string(), ip("127.0.0.1")),
            ("eth0".to_string(), ip("169.254.1.1")),
            ("eth0".to_string(), ip("fd00::5")),
            ("eth0".to_string(), ip("172.17.0.5")),
            ("net1".to_string(), ip("fe80::2")),
            ("net1".to_string(), ip("2001:db8::7")),
        ];
        assert_eq!(
            pick_default_address(route, route6, &addrs),
            ip("172.17.0.5")
        );
        // No IPv4 default route: the IPv6 one, not link-local.
        assert_eq!(pick_default_address("", route6, &addrs), ip("2001:db8::7"));
        // No default route at all.
        assert_eq!(pick_default_address("", "", &addrs), ip("127.0.0.1"));
        // Route, but only link-local on it.
        assert_eq!(
            pick_default_address(route, "", &addrs[..2]),
            ip("127.0.0.1")
        );
        // The real thing does not fail on this host.
        let _ = default_address();
        assert!(interface_addresses().iter().any(|(_, a)| a.is_loopback()));
    }

    #[test]
    fn run_probe_maps_results() {
        let (port, _rx) = serve(vec![b"HTTP/1.1 503 Busy\r\n\r\nnot ready\n".to_vec()]);
        let h = Handler::HttpGet(HttpGet {
            host: None,
            ..get("/ready", port, vec![])
        });
        let run = run_probe_with(
            &h,
            LOCAL,
            &ResolverFiles::default(),
            &mut connect_direct,
            soon(),
        )
        .unwrap();
        assert_eq!(
            run.summary,
            format!("httpGet http://127.0.0.1:{port}/ready")
        );
        assert_eq!(run.output, b"not ready\n");
        assert!(matches!(run.result, Err(HookFailure::HttpStatus(503))));

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = Handler::TcpSocket(TcpSocket {
            port,
            host: Some("127.0.0.1".into()),
        });
        let run = run_probe(&t, &ResolverFiles::default(), &mut connect_direct, soon()).unwrap();
        assert_eq!(run.summary, format!("tcpSocket 127.0.0.1:{port}"));
        assert!(run.result.is_ok());
        drop(listener);
        let run = run_probe(&t, &ResolverFiles::default(), &mut connect_direct, soon()).unwrap();
        let e = crate::HookError::new(
            crate::HookKind::PostStart,
            run.summary,
            run.result.unwrap_err(),
        );
        assert!(
            e.to_string().starts_with(&format!("postStart hook failed: tcpSocket 127.0.0.1:{port} failed: connect to 127.0.0.1:{port}: ")),
            "{e}"
        );
        let exec = Handler::Exec {
            command: vec!["x".into()],
        };
        assert!(run_probe(
            &exec,
            &ResolverFiles::default(),
            &mut connect_direct,
            soon()
        )
        .is_none());
    }

    #[test]
    fn chunked_body_and_keep_alive_server() {
        // A chunked response from a server that keeps the connection open anyway.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n")
                .unwrap();
            // Hold the connection open until the client closes it (bounded).
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.read(&mut buf);
        });
        let started = Instant::now();
        let r = run(&get("/", port, vec![])).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "waited for the server to close"
        );
        server.join().unwrap();
        assert_eq!(dechunk(b"3\r\nabc\r\n5\r\nde"), b"abcde");
    }

    #[test]
    fn locations() {
        let base = Target {
            scheme: Scheme::Http,
            host: "h".into(),
            port: 8080,
            path: "/a/b?q=1".into(),
        };
        let t = |s: &str| resolve_location(&base, s).map(|t| t.url());
        assert_eq!(t("/x").as_deref(), Some("http://h:8080/x"));
        assert_eq!(t("c").as_deref(), Some("http://h:8080/a/c"));
        assert_eq!(t("http://h/z").as_deref(), Some("http://h:80/z"));
        assert_eq!(t("//h:81").as_deref(), Some("http://h:81/"));
        assert_eq!(
            t("https://[::1]:8443/s").as_deref(),
            Some("https://[::1]:8443/s")
        );
        assert_eq!(t("http://h:notaport/"), None);
        assert_eq!(t(""), None);
    }
}
