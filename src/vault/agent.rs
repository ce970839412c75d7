//! What an owner asks for when creating an agent, validated.

use super::{Invalid, Scope, check_name, invalid};
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

pub const DEFAULT_RATE_PER_MINUTE: u32 = 600;
pub const MAX_RATE_PER_MINUTE: u32 = 1_000_000;
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub ttl: Option<Duration>,
    pub ip_allowlist: Vec<IpNet>,
    pub rate_limit_per_minute: u32,
}

impl AgentSpec {
    pub fn parse(
        name: &str,
        scopes: &[String],
        ttl_seconds: Option<u64>,
        ip_allowlist: &[String],
        rate_limit_per_minute: Option<u32>,
    ) -> Result<Self, Invalid> {
        check_agent_name(name)?;
        if scopes.is_empty() {
            return Err(invalid(
                "scopes must name at least one scope; an agent without scopes can read nothing",
            ));
        }
        let mut parsed: Vec<Scope> = scopes
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<_, _>>()?;
        parsed.sort();
        parsed.dedup();
        let ttl = match ttl_seconds {
            Some(0) => return Err(invalid("ttl_seconds must be at least 1")),
            Some(s) if Duration::from_secs(s) > MAX_TTL => {
                return Err(invalid("ttl_seconds must be at most ten years"));
            }
            Some(s) => Some(Duration::from_secs(s)),
            None => None,
        };
        let ip_allowlist = ip_allowlist
            .iter()
            .map(|s| parse_net(s))
            .collect::<Result<_, _>>()?;
        let rate = rate_limit_per_minute.unwrap_or(DEFAULT_RATE_PER_MINUTE);
        if !(1..=MAX_RATE_PER_MINUTE).contains(&rate) {
            return Err(invalid(format!(
                "rate_limit_per_minute must be between 1 and {MAX_RATE_PER_MINUTE}"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            scopes: parsed,
            ttl,
            ip_allowlist,
            rate_limit_per_minute: rate,
        })
    }
}

/// Agent (and owner) names: not blank, at most 128 characters, no control characters.
pub fn check_agent_name(name: &str) -> Result<(), Invalid> {
    check_name("agent name", name, 128)
}

/// Accepts a CIDR (`10.0.0.0/8`) or a single address (`192.0.2.7`, `::1`).
pub fn parse_net(s: &str) -> Result<IpNet, Invalid> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            invalid(format!(
                "ip_allowlist entry {s:?} is neither an IP address nor a CIDR such as 10.0.0.0/8"
            ))
        })
}

/// True when the list is empty (no restriction) or one of its networks holds `ip`.
/// IPv4-mapped IPv6 addresses match IPv4 networks.
pub fn ip_allowed(list: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    list.is_empty() || list.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_cidr_single_and_mapped() {
        let list = vec![parse_net("10.0.0.0/8").unwrap(), parse_net("::1").unwrap()];
        assert!(ip_allowed(&list, "10.1.2.3".parse().unwrap()));
        assert!(ip_allowed(&list, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(ip_allowed(&list, "::1".parse().unwrap()));
        assert!(!ip_allowed(&list, "127.0.0.1".parse().unwrap()));
        assert!(ip_allowed(&[], "127.0.0.1".parse().unwrap()));
        assert!(parse_net("nonsense").is_err());
    }

    #[test]
    fn spec_rules() {
        let s = |scopes: &[&str], ttl, rate| {
            let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            AgentSpec::parse("a", &scopes, ttl, &[], rate)
        };
        assert!(s(&[], None, None).is_err());
        assert!(s(&["x"], Some(0), None).is_err());
        assert!(s(&["x"], None, Some(0)).is_err());
        let ok = s(&["b", "a", "a"], Some(60), None).unwrap();
        assert_eq!(ok.scopes.len(), 2);
        assert_eq!(ok.rate_limit_per_minute, DEFAULT_RATE_PER_MINUTE);
    }
}
