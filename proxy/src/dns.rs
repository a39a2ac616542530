//! Fake-IP DNS for the sandbox: every A query is answered from 198.18.0.0/15 with a stable
//! name <-> address map, so a captured connection to a fake address can be named again, no
//! DNS query leaves the machine, and policy can refuse names at resolve time.
//!
//! AAAA and other types get NODATA (the sandbox then speaks IPv4 to fake addresses only;
//! a fake-IP setup that answered AAAA with real addresses would leak around the capture).
//! Non-query opcodes get NOTIMP. Packets are parsed and built with `hickory-proto`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType, rdata::A};
use tokio::net::UdpSocket;

use crate::config::EgressPolicy;
use crate::denial::{Denial, DenyRule};
use crate::matching::RouteTable;

/// First address of the pool: 198.18.0.0/15 (RFC 2544 benchmarking range, never routed).
const POOL_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// Usable offsets 1 ..= POOL_SIZE - 2 (skip .0.0 and .255.255).
const POOL_SIZE: u32 = 1 << 17;
const TTL: u32 = 300;

/// What a name the policy refuses gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeniedAnswer {
    /// "No such name" (the default: resolvers give up at once).
    #[default]
    NxDomain,
    /// "Refused" (the name may exist; we will not answer).
    Refused,
}

/// A name the egress policy refused to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedName {
    /// The name asked for.
    pub name: String,
    /// Why (a resolve has no port; the rule is the egress policy's).
    pub rule: DenyRule,
}

impl DeniedName {
    /// The refusal as the proxy reports every other one, for the port the caller names (the
    /// DNS stub does not know which port the child meant to use).
    pub fn denial(&self, port: u16) -> Denial {
        // The host-loopback name has no default port to guess: no port at all (0) makes the
        // line say "--allow-host-port PORT" instead of naming the wrong one.
        let port = if self.rule == DenyRule::HostPortNotAllowed { 0 } else { port };
        Denial::new(self.name.as_str(), port, self.rule.clone())
    }
}

#[derive(Debug, Default)]
struct Pool {
    by_name: HashMap<String, Ipv4Addr>,
    by_ip: HashMap<Ipv4Addr, String>,
    next: u32,
}

struct Policy {
    egress: EgressPolicy,
    routes: Arc<RouteTable>,
    denied: DeniedAnswer,
}

/// The run's fake-IP resolver and its name map.
#[derive(Default)]
pub struct FakeDns {
    pool: Mutex<Pool>,
    policy: Option<Policy>,
}

impl std::fmt::Debug for FakeDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDns").finish_non_exhaustive()
    }
}

/// Is `ip` in the fake range?
pub fn is_fake(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => (u32::from(v4) & !(POOL_SIZE - 1)) == POOL_BASE,
        IpAddr::V6(_) => false,
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl FakeDns {
    /// Answers every name.
    pub fn new() -> Self {
        FakeDns::default()
    }

    /// Refuses names the egress policy denies (with `denied`), answers the rest.
    pub fn with_policy(egress: EgressPolicy, routes: Arc<RouteTable>, denied: DeniedAnswer) -> Self {
        FakeDns { pool: Mutex::default(), policy: Some(Policy { egress, routes, denied }) }
    }

    /// The fake address for `name`, allocated on first use and stable afterwards. When the
    /// pool wraps, the oldest mappings are reused.
    pub fn ip_for(&self, name: &str) -> Ipv4Addr {
        let name = normalize(name);
        let mut pool = self.pool.lock().expect("dns pool");
        if let Some(ip) = pool.by_name.get(&name) {
            return *ip;
        }
        pool.next = if pool.next + 1 >= POOL_SIZE - 1 { 1 } else { pool.next + 1 };
        let ip = Ipv4Addr::from(POOL_BASE + pool.next);
        if let Some(old) = pool.by_ip.remove(&ip) {
            pool.by_name.remove(&old);
        }
        pool.by_name.insert(name.clone(), ip);
        pool.by_ip.insert(ip, name);
        ip
    }

    /// The name a fake address was handed out for.
    pub fn name_for(&self, ip: IpAddr) -> Option<String> {
        let IpAddr::V4(v4) = ip else { return None };
        self.pool.lock().expect("dns pool").by_ip.get(&v4).cloned()
    }

    fn denied(&self, name: &str) -> Option<(DeniedAnswer, DenyRule)> {
        let policy = self.policy.as_ref()?;
        // Raw TCP names resolve too: `--allow-tcp` hosts, and the host-loopback name only
        // when some `--allow-host-port` makes it mean something. The proxy still checks the
        // port of every connection.
        if name == crate::raw_tcp::HOST_LOOPBACK_NAME {
            return policy.egress.host_ports.is_empty().then_some((policy.denied, DenyRule::HostPortNotAllowed));
        }
        if policy.egress.tcp.iter().any(|d| d.host == name) && policy.egress.deny.iter().all(|p| !p.matches(name)) {
            return None;
        }
        let owned = policy.routes.owns_host(name);
        policy.egress.check(name, 0, owned).err().map(|denial| (policy.denied, denial.rule))
    }

    /// Answer one DNS packet; `None` = drop it (unparseable, or not a query).
    pub fn answer(&self, packet: &[u8]) -> Option<Vec<u8>> {
        self.respond(packet).map(|(bytes, _)| bytes)
    }

    /// Like [`FakeDns::answer`], and also says which name the egress policy denied and why,
    /// so the caller can audit denials that never become a connection.
    pub fn respond(&self, packet: &[u8]) -> Option<(Vec<u8>, Option<DeniedName>)> {
        let mut denial = None;
        let bytes = self.respond_inner(packet, &mut denial)?;
        Some((bytes, denial))
    }

    fn respond_inner(&self, packet: &[u8], denial: &mut Option<DeniedName>) -> Option<Vec<u8>> {
        let request = Message::from_vec(packet).ok()?;
        if request.message_type() != MessageType::Query {
            return None;
        }
        let mut response = Message::new();
        response
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_recursion_desired(request.recursion_desired())
            .set_recursion_available(true);
        if request.op_code() != OpCode::Query {
            response.set_response_code(ResponseCode::NotImp);
            return response.to_vec().ok();
        }
        let [query] = request.queries() else {
            response.set_response_code(ResponseCode::FormErr);
            return response.to_vec().ok();
        };
        response.add_query(query.clone());
        let name = normalize(&query.name().to_ascii());
        if query.query_class() != DNSClass::IN || name.is_empty() {
            response.set_response_code(ResponseCode::Refused);
            return response.to_vec().ok();
        }
        if let Some((denied, rule)) = self.denied(&name) {
            response.set_response_code(match denied {
                DeniedAnswer::NxDomain => ResponseCode::NXDomain,
                DeniedAnswer::Refused => ResponseCode::Refused,
            });
            *denial = Some(DeniedName { name, rule });
            return response.to_vec().ok();
        }
        response.set_authoritative(true);
        if query.query_type() == RecordType::A {
            let ip = self.ip_for(&name);
            response.add_answer(Record::from_rdata(query.name().clone(), TTL, RData::A(A(ip))));
        }
        // Everything else: NOERROR with no answer (NODATA).
        response.set_response_code(ResponseCode::NoError);
        response.to_vec().ok()
    }

    /// Serve queries on `socket` until `shutdown` resolves.
    pub async fn serve(self: Arc<Self>, socket: UdpSocket, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 4096];
        loop {
            let (len, peer) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                received = socket.recv_from(&mut buf) => match received {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::debug!(%error, "dns receive failed");
                        continue;
                    }
                },
            };
            if let Some(reply) = self.answer(&buf[..len])
                && let Err(error) = socket.send_to(&reply, peer).await
            {
                tracing::debug!(%error, %peer, "dns reply failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EgressMode;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(4242)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        m.to_vec().unwrap()
    }

    fn ask(dns: &FakeDns, name: &str, rtype: RecordType) -> Message {
        Message::from_vec(&dns.answer(&query(name, rtype)).unwrap()).unwrap()
    }

    #[test]
    fn a_records_are_fake_and_stable() {
        let dns = FakeDns::new();
        let first = ask(&dns, "api.openai.com.", RecordType::A);
        assert_eq!(first.id(), 4242);
        assert_eq!(first.response_code(), ResponseCode::NoError);
        let RData::A(A(ip)) = first.answers()[0].data() else { panic!("not an A record") };
        assert!(is_fake(IpAddr::V4(*ip)));
        let again = ask(&dns, "API.openai.com", RecordType::A);
        assert_eq!(again.answers()[0].data(), first.answers()[0].data());
        assert_eq!(dns.name_for(IpAddr::V4(*ip)).as_deref(), Some("api.openai.com"));
        let other = ask(&dns, "example.org", RecordType::A);
        assert_ne!(other.answers()[0].data(), first.answers()[0].data());
        assert_eq!(dns.name_for("1.1.1.1".parse().unwrap()), None);
    }

    #[test]
    fn aaaa_and_other_types_get_nodata() {
        let dns = FakeDns::new();
        for rtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT, RecordType::HTTPS] {
            let m = ask(&dns, "api.openai.com", rtype);
            assert_eq!(m.response_code(), ResponseCode::NoError, "{rtype}");
            assert!(m.answers().is_empty(), "{rtype}");
        }
    }

    #[test]
    fn non_queries_and_garbage() {
        let dns = FakeDns::new();
        assert!(dns.answer(b"\x00\x01garbage").is_none());
        let mut m = Message::new();
        m.set_id(7)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Update)
            .add_query(Query::query(Name::from_ascii("a.b").unwrap(), RecordType::A));
        let reply = Message::from_vec(&dns.answer(&m.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(reply.response_code(), ResponseCode::NotImp);
    }

    #[test]
    fn the_host_loopback_name_resolves_only_with_a_host_port() {
        let routes = Arc::new(RouteTable::new(Vec::new(), Vec::new()));
        let closed = FakeDns::with_policy(EgressPolicy::default(), routes.clone(), DeniedAnswer::NxDomain);
        let (bytes, denied) = closed.respond(&query("host.authsome.internal", RecordType::A)).unwrap();
        assert_eq!(Message::from_vec(&bytes).unwrap().response_code(), ResponseCode::NXDomain);
        let line = denied.unwrap().denial(443).to_string();
        assert_eq!(line, "denied host.authsome.internal (a host port not allowed); allow with --allow-host-port PORT");
        let open = EgressPolicy {
            mode: EgressMode::Allowlist,
            host_ports: vec![3000],
            tcp: vec!["db.example.com:5432".parse().unwrap()],
            ..EgressPolicy::default()
        };
        let open = FakeDns::with_policy(open, routes, DeniedAnswer::NxDomain);
        for name in ["host.authsome.internal", "db.example.com"] {
            assert_eq!(ask(&open, name, RecordType::A).response_code(), ResponseCode::NoError, "{name}");
        }
        assert_eq!(ask(&open, "other.example.com", RecordType::A).response_code(), ResponseCode::NXDomain);
    }

    #[test]
    fn denied_names_per_policy() {
        let routes = Arc::new(RouteTable::new(
            vec![crate::matching::Route {
                owner: "o".into(),
                hosts: vec!["api.x.com".parse().unwrap()],
                path_prefix: None,
                excluded_paths: vec![],
            }],
            vec![],
        ));
        let egress = EgressPolicy { mode: EgressMode::Providers, ..EgressPolicy::default() };
        let dns = FakeDns::with_policy(egress.clone(), routes.clone(), DeniedAnswer::NxDomain);
        assert_eq!(ask(&dns, "api.x.com", RecordType::A).answers().len(), 1);
        assert_eq!(ask(&dns, "evil.com", RecordType::A).response_code(), ResponseCode::NXDomain);
        let dns = FakeDns::with_policy(egress, routes, DeniedAnswer::Refused);
        assert_eq!(ask(&dns, "evil.com", RecordType::AAAA).response_code(), ResponseCode::Refused);
    }

    #[test]
    fn pool_wraps_without_leaving_the_range() {
        let dns = FakeDns::new();
        dns.pool.lock().unwrap().next = POOL_SIZE - 3;
        let a = dns.ip_for("a.test");
        let b = dns.ip_for("b.test");
        assert_eq!(a, Ipv4Addr::new(198, 19, 255, 254));
        assert_eq!(b, Ipv4Addr::new(198, 18, 0, 1));
        assert!(is_fake(IpAddr::V4(a)) && is_fake(IpAddr::V4(b)));
        assert!(!is_fake("198.20.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn serves_over_udp() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let dns = Arc::new(FakeDns::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(dns.clone().serve(socket, async {
            let _ = rx.await;
        }));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(&query("svc.test", RecordType::A), addr).await.unwrap();
        let mut buf = [0u8; 512];
        let (n, _) =
            tokio::time::timeout(std::time::Duration::from_secs(5), client.recv_from(&mut buf)).await.unwrap().unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(reply.answers().len(), 1);
        let _ = tx.send(());
        server.await.unwrap().unwrap();
    }
}
