//! DNS resolution for STRICT_DNS and LOGICAL_DNS clusters through the
//! system resolver (`getaddrinfo` via `tokio::net::lookup_host`), filtered
//! by Envoy's `dns_lookup_family`:
//! AUTO (IPv6 if any, else IPv4), V4_ONLY, V6_ONLY, V4_PREFERRED (IPv4 if
//! any, else IPv6), ALL (IPv4 then IPv6).

use std::io;
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::cluster::DnsLookupFamily;

/// Resolves `name:port`; an answer with no address of the wanted family
/// is an error (the cluster then keeps its previous hosts).
pub(crate) async fn resolve(
    name: &str,
    port: u16,
    family: DnsLookupFamily,
) -> io::Result<Vec<SocketAddr>> {
    let answers: Vec<SocketAddr> = tokio::net::lookup_host((name, port)).await?.collect();
    let addresses = filter_family(answers, family);
    if addresses.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no {} address for '{name}'",
                family.as_str_name().to_ascii_lowercase()
            ),
        ));
    }
    Ok(addresses)
}

pub(crate) fn filter_family(answers: Vec<SocketAddr>, family: DnsLookupFamily) -> Vec<SocketAddr> {
    let mut v4: Vec<SocketAddr> = Vec::new();
    let mut v6: Vec<SocketAddr> = Vec::new();
    for address in answers {
        let list = if address.is_ipv4() { &mut v4 } else { &mut v6 };
        if !list.contains(&address) {
            list.push(address);
        }
    }
    match family {
        DnsLookupFamily::V4Only => v4,
        DnsLookupFamily::V6Only => v6,
        DnsLookupFamily::Auto => {
            if v6.is_empty() {
                v4
            } else {
                v6
            }
        }
        DnsLookupFamily::V4Preferred => {
            if v4.is_empty() {
                v6
            } else {
                v4
            }
        }
        DnsLookupFamily::All => {
            v4.extend(v6);
            v4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Vec<SocketAddr> {
        vec![
            "[::1]:80".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
        ]
    }

    #[test]
    fn families_follow_envoy() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(filter_family(answers(), DnsLookupFamily::Auto), vec![v6]);
        assert_eq!(filter_family(answers(), DnsLookupFamily::V4Only), vec![v4]);
        assert_eq!(filter_family(answers(), DnsLookupFamily::V6Only), vec![v6]);
        assert_eq!(
            filter_family(answers(), DnsLookupFamily::V4Preferred),
            vec![v4]
        );
        assert_eq!(filter_family(answers(), DnsLookupFamily::All), vec![v4, v6]);
        assert_eq!(filter_family(vec![v4], DnsLookupFamily::Auto), vec![v4]);
        assert_eq!(
            filter_family(vec![v6], DnsLookupFamily::V4Preferred),
            vec![v6]
        );
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback() {
        let addresses = resolve("localhost", 8080, DnsLookupFamily::V4Only)
            .await
            .expect("localhost resolves");
        assert_eq!(addresses, vec!["127.0.0.1:8080".parse().unwrap()]);
        let any = resolve("localhost", 8080, DnsLookupFamily::All)
            .await
            .unwrap();
        assert!(any.iter().all(|a| a.ip().is_loopback()), "{any:?}");
    }
}
