//! Unit tests of the plan → maps diff, against an in-memory table that checks
//! after every single write that no service entry points at a missing
//! backend or Maglev table (what a connect in the kernel could trip on).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;
use crate::datapath::plan::{PlannedService, ServiceMode};
use sluice_ebpf::common::MaglevTable;

#[derive(Default)]
struct FakeTable {
    services: BTreeMap<Lb4ServiceKey, Lb4Service>,
    backends: BTreeMap<Lb4BackendKey, Lb4Backend>,
    services6: BTreeMap<Lb6ServiceKey, Lb4Service>,
    backends6: BTreeMap<Lb4BackendKey, Lb6Backend>,
    maglev: BTreeMap<MaglevKey, MaglevTable>,
    writes: usize,
    reset_backend_ids: Vec<u32>,
    names: BTreeMap<u32, String>,
    modes: BTreeMap<u32, u32>,
    /// Backend entries written so far, and which one (0-based) fails.
    backend_puts: usize,
    fail_backend_put: Option<usize>,
}

impl FakeTable {
    /// What a connect in the kernel could see at this instant.
    fn assert_consistent(&self) {
        let services = self
            .services
            .values()
            .map(|s| (s, false))
            .chain(self.services6.values().map(|s| (s, true)));
        for (service, v6) in services {
            for index in 0..service.backend_count {
                let backend = Lb4BackendKey {
                    service_id: service.service_id,
                    slot: service.slot,
                    index,
                };
                let present = if v6 {
                    self.backends6.contains_key(&backend)
                } else {
                    self.backends.contains_key(&backend)
                };
                assert!(
                    present,
                    "service {service:?} points at missing backend {backend:?} after write {}",
                    self.writes
                );
            }
            if service.flags & (SERVICE_FLAG_MAGLEV | SERVICE_FLAG_WEIGHTED) != 0 {
                let key = MaglevKey {
                    service_id: service.service_id,
                    slot: service.slot,
                };
                let table = self.maglev.get(&key).unwrap_or_else(|| {
                    panic!(
                        "service {service:?} has no table after write {}",
                        self.writes
                    )
                });
                assert!(
                    table
                        .backend_index
                        .iter()
                        .all(|i| u32::from(*i) < service.backend_count),
                    "table of {service:?} names a backend beyond its count"
                );
            }
        }
    }

    fn op(&mut self) -> Result<(), String> {
        self.writes += 1;
        self.assert_consistent();
        Ok(())
    }

    /// VIP → backends the kernel would choose from.
    fn resolved(&self) -> BTreeMap<(IpAddr, u16), Vec<SocketAddr>> {
        let mut resolved = BTreeMap::new();
        for (key, service) in &self.services {
            let backends = (0..service.backend_count)
                .map(|index| {
                    let b = self.backends
                        [&backend_key(service.service_id, service.slot, index as usize)];
                    SocketAddr::new(
                        Ipv4Addr::from(u32::from_be(b.address)).into(),
                        u16::from_be(b.port),
                    )
                })
                .collect();
            let vip = Ipv4Addr::from(u32::from_be(key.address)).into();
            resolved.insert((vip, u16::from_be(key.port)), backends);
        }
        for (key, service) in &self.services6 {
            let backends = (0..service.backend_count)
                .map(|index| {
                    let b = self.backends6
                        [&backend_key(service.service_id, service.slot, index as usize)];
                    SocketAddr::new(ip6_from_words(b.address).into(), u16::from_be(b.port))
                })
                .collect();
            let vip = ip6_from_words(key.address).into();
            resolved.insert((vip, u16::from_be(key.port)), backends);
        }
        resolved
    }
}

impl LbTable for FakeTable {
    type Error = String;
    fn put_backend(&mut self, key: Lb4BackendKey, value: Lb4Backend) -> Result<(), String> {
        self.backend_puts += 1;
        if self.fail_backend_put == Some(self.backend_puts - 1) {
            return Err("No space left on device".into());
        }
        self.backends.insert(key, value);
        self.op()
    }
    fn delete_backend(&mut self, key: &Lb4BackendKey) -> Result<(), String> {
        self.backends.remove(key);
        self.op()
    }
    fn put_service(&mut self, key: Lb4ServiceKey, value: Lb4Service) -> Result<(), String> {
        self.services.insert(key, value);
        self.op()
    }
    fn delete_service(&mut self, key: &Lb4ServiceKey) -> Result<(), String> {
        self.services.remove(key);
        self.op()
    }
    fn put_backend6(&mut self, key: Lb4BackendKey, value: Lb6Backend) -> Result<(), String> {
        self.backends6.insert(key, value);
        self.op()
    }
    fn delete_backend6(&mut self, key: &Lb4BackendKey) -> Result<(), String> {
        self.backends6.remove(key);
        self.op()
    }
    fn put_service6(&mut self, key: Lb6ServiceKey, value: Lb4Service) -> Result<(), String> {
        self.services6.insert(key, value);
        self.op()
    }
    fn delete_service6(&mut self, key: &Lb6ServiceKey) -> Result<(), String> {
        self.services6.remove(key);
        self.op()
    }
    fn put_maglev(&mut self, key: MaglevKey, table: &MaglevTable) -> Result<(), String> {
        self.maglev.insert(key, *table);
        self.op()
    }
    fn delete_maglev(&mut self, key: &MaglevKey) -> Result<(), String> {
        self.maglev.remove(key);
        self.op()
    }
    fn put_service_info(&mut self, service_id: u32, info: ServiceInfo) -> Result<(), String> {
        self.names
            .insert(service_id, info.listener_name().to_string());
        self.modes.insert(service_id, info.mode);
        Ok(())
    }
    fn reset_service_counters(&mut self, _service_id: u32) -> Result<(), String> {
        Ok(())
    }
    fn reset_backend_counters(&mut self, backend_id: u32) -> Result<(), String> {
        self.reset_backend_ids.push(backend_id);
        Ok(())
    }
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn address(port: u16) -> ServiceAddress {
    ServiceAddress {
        vip: VIP.into(),
        port,
        protocol: ServiceProtocol::Tcp,
    }
}

fn backend(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(127, 0, 0, last).into(), port)
}

fn service(port: u16, backends: &[SocketAddr], choice: BackendChoice) -> PlannedService {
    PlannedService {
        listener: format!("svc{port}"),
        cluster: "c".into(),
        backends: backends
            .iter()
            .map(|address| PlannedBackend {
                address: *address,
                weight: 1,
            })
            .collect(),
        choice,
        mode: ServiceMode::SocketLb,
    }
}

fn plan(services: &[(u16, Vec<SocketAddr>)]) -> Plan {
    Plan {
        services: services
            .iter()
            .map(|(port, backends)| {
                (
                    address(*port),
                    service(*port, backends, BackendChoice::Random),
                )
            })
            .collect(),
        not_planned: Vec::new(),
    }
}

fn expected(services: &[(u16, Vec<SocketAddr>)]) -> BTreeMap<(IpAddr, u16), Vec<SocketAddr>> {
    services
        .iter()
        .map(|(port, backends)| ((IpAddr::V4(VIP), *port), backends.clone()))
        .collect()
}

fn v4_key(address: &ServiceAddress) -> Lb4ServiceKey {
    match service_key(address) {
        ServiceKey::V4(key) => key,
        ServiceKey::V6(_) => panic!("{address} is IPv6"),
    }
}

#[test]
fn installs_updates_and_removes_services() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let first = [
        (80, vec![backend(1, 8080), backend(2, 8080)]),
        (81, vec![backend(1, 8080)]),
    ];
    syncer.apply(&plan(&first), &mut table).unwrap();
    assert_eq!(table.resolved(), expected(&first));
    // Both services share the backend 127.0.0.1:8080 and its counter slot.
    assert_eq!(table.reset_backend_ids, vec![0, 1]);
    let id = table.services[&v4_key(&address(81))].service_id;
    assert_eq!(table.names[&id], "svc81");

    let second = [(80, vec![backend(3, 8080)]), (81, vec![backend(1, 8080)])];
    syncer.apply(&plan(&second), &mut table).unwrap();
    assert_eq!(table.resolved(), expected(&second));
    assert_eq!(table.services[&v4_key(&address(80))].slot, 1);
    // The other service was not touched.
    assert_eq!(table.services[&v4_key(&address(81))].slot, 0);

    let third = [(
        80,
        vec![backend(4, 8080), backend(5, 8080), backend(6, 8080)],
    )];
    syncer.apply(&plan(&third), &mut table).unwrap();
    assert_eq!(table.resolved(), expected(&third));
    // Slot 0 reused: its old entries were overwritten, none left beyond 3;
    // slot 1 keeps the previous list for connects that read the old entry.
    let id = table.services[&v4_key(&address(80))].service_id;
    let in_slot = |slot| {
        table
            .backends
            .keys()
            .filter(|k| k.service_id == id && k.slot == slot)
            .count()
    };
    assert_eq!((in_slot(0), in_slot(1)), (3, 1));

    syncer.apply(&plan(&[]), &mut table).unwrap();
    assert!(table.services.is_empty());
    assert!(table.backends.is_empty(), "{:?}", table.backends);
    assert!(syncer.backend_ids.is_empty());
}

#[test]
fn backend_ids_stay_unique_while_endpoints_churn() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    // Every push moves every endpoint (a new port): the previous slot keeps
    // the old ids, the new slot gets fresh ones, freed ids come back later.
    for generation in 0..5u16 {
        let backends: Vec<SocketAddr> = (1..=200)
            .map(|last| backend(last, 9000 + generation))
            .collect();
        syncer
            .apply(&plan(&[(80, backends.clone())]), &mut table)
            .unwrap();
        let in_use: BTreeMap<SocketAddr, u32> = syncer.backends().collect();
        let distinct: std::collections::BTreeSet<u32> = in_use.values().copied().collect();
        assert_eq!(distinct.len(), in_use.len(), "an id was handed out twice");
        assert_eq!(syncer.used_backend_ids, distinct);
        for address in &backends {
            assert!(in_use.contains_key(address));
        }
        // Two slots' worth at most: the current list and the previous one.
        assert!(in_use.len() <= 400, "{} ids held", in_use.len());
    }
}

#[test]
fn freed_counter_slots_are_zeroed_after_the_flip_and_reused_without_a_write() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let generation = |port: u16| -> Vec<SocketAddr> { (1..=3).map(|i| backend(i, port)).collect() };
    for port in [9000, 9001] {
        syncer
            .apply(&plan(&[(80, generation(port))]), &mut table)
            .unwrap();
    }
    // Fresh ids are zeroed when taken.
    assert_eq!(table.reset_backend_ids, vec![0, 1, 2, 3, 4, 5]);
    // The third list takes fresh ids too; the first one's ids are freed
    // (no slot refers to them) and zeroed after the service flipped.
    syncer
        .apply(&plan(&[(80, generation(9002))]), &mut table)
        .unwrap();
    assert_eq!(table.reset_backend_ids[6..9], [6, 7, 8]);
    let mut freed = table.reset_backend_ids[9..].to_vec();
    freed.sort();
    assert_eq!(freed, [0, 1, 2]);
    // The fourth list takes those zeroed ids, without writing them again.
    let resets = table.reset_backend_ids.len();
    syncer
        .apply(&plan(&[(80, generation(9003))]), &mut table)
        .unwrap();
    let mut taken: Vec<u32> = generation(9003)
        .iter()
        .map(|address| syncer.backend_id(address).unwrap())
        .collect();
    taken.sort();
    assert_eq!(taken, [0, 1, 2]);
    assert_eq!(
        table.reset_backend_ids.len(),
        resets + 3,
        "only the freed 3..6 are zeroed"
    );
    assert_eq!(table.resolved(), expected(&[(80, generation(9003))]));
}

#[test]
fn an_unchanged_plan_writes_nothing() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let services = [(80, vec![backend(1, 8080)])];
    syncer.apply(&plan(&services), &mut table).unwrap();
    let writes = table.writes;
    syncer.apply(&plan(&services), &mut table).unwrap();
    assert_eq!(table.writes, writes);
}

#[test]
fn only_entries_that_differ_from_the_slot_are_rewritten() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let first: Vec<SocketAddr> = (1..=100).map(|i| backend(i, 9000)).collect();
    let mut second = first.clone();
    second[5] = backend(5, 9001);
    let mut third = second.clone();
    third[7] = backend(7, 9001);
    // Slots 0 and 1 are written whole the first time.
    for backends in [&first, &second] {
        syncer
            .apply(&plan(&[(80, backends.clone())]), &mut table)
            .unwrap();
    }
    assert_eq!(table.backend_puts, 200);
    // Slot 0 holds `first`: `third` differs from it at indices 5 and 7.
    syncer
        .apply(&plan(&[(80, third.clone())]), &mut table)
        .unwrap();
    assert_eq!(table.backend_puts, 202);
    assert_eq!(table.resolved(), expected(&[(80, third)]));
}

#[test]
fn after_a_failed_write_the_slot_is_rewritten_whole() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let first: Vec<SocketAddr> = (1..=10).map(|i| backend(i, 9000)).collect();
    let second: Vec<SocketAddr> = (1..=10).map(|i| backend(i, 9001)).collect();
    let third: Vec<SocketAddr> = (1..=10).map(|i| backend(i, 9002)).collect();
    for backends in [&first, &second] {
        syncer
            .apply(&plan(&[(80, backends.clone())]), &mut table)
            .unwrap();
    }
    // Writing `third` into slot 0 fails after three entries...
    table.fail_backend_put = Some(table.backend_puts + 3);
    syncer.apply(&plan(&[(80, third)]), &mut table).unwrap_err();
    assert_eq!(table.resolved(), expected(&[(80, second)]));
    // ...so slot 0 no longer holds `first`, and going back to it rewrites it.
    table.fail_backend_put = None;
    syncer
        .apply(&plan(&[(80, first.clone())]), &mut table)
        .unwrap();
    assert_eq!(table.resolved(), expected(&[(80, first)]));
}

#[test]
fn shrinking_and_emptying_a_service_keeps_every_step_consistent() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let many: Vec<SocketAddr> = (1..=5).map(|i| backend(i, 9000)).collect();
    for backends in [
        many.clone(),
        vec![backend(9, 9000)],
        many.clone(),
        vec![],
        many,
    ] {
        let services = [(80, backends)];
        syncer.apply(&plan(&services), &mut table).unwrap();
        assert_eq!(table.resolved(), expected(&services));
    }
}

#[test]
fn keys_are_in_network_byte_order() {
    let key = v4_key(&address(80));
    assert_eq!(key.address.to_ne_bytes(), [10, 96, 0, 10]);
    assert_eq!(key.port.to_ne_bytes(), [0, 80]);
    assert_eq!(key.protocol, 6);
}

#[test]
fn tcp_and_udp_services_on_one_vip_and_port_are_two_kernel_entries() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let udp = ServiceAddress {
        protocol: ServiceProtocol::Udp,
        ..address(53)
    };
    let mut both = plan(&[(53, vec![backend(1, 8053)])]);
    let mut dns = service(53, &[backend(2, 5353)], BackendChoice::Random);
    dns.listener = "dns_udp".into();
    both.services.insert(udp, dns);
    syncer.apply(&both, &mut table).unwrap();
    assert_eq!(v4_key(&udp).protocol, PROTO_UDP);
    assert_eq!(table.services.len(), 2);
    let tcp_entry = table.services[&v4_key(&address(53))];
    let udp_entry = table.services[&v4_key(&udp)];
    assert_ne!(tcp_entry.service_id, udp_entry.service_id);
    assert_eq!(table.names[&udp_entry.service_id], "dns_udp");
    let udp_backend = table.backends[&backend_key(udp_entry.service_id, udp_entry.slot, 0)];
    assert_eq!(udp_backend.port, 5353u16.to_be());
    // Removing the UDP listener leaves the TCP service alone.
    both.services.remove(&udp);
    syncer.apply(&both, &mut table).unwrap();
    assert_eq!(table.services.len(), 1);
    assert!(table.services.contains_key(&v4_key(&address(53))));
    table.assert_consistent();
}

#[test]
fn a_failed_write_names_the_service() {
    struct Failing;
    impl LbTable for Failing {
        type Error = &'static str;
        fn put_backend(&mut self, _: Lb4BackendKey, _: Lb4Backend) -> Result<(), Self::Error> {
            Err("No space left on device")
        }
        fn delete_backend(&mut self, _: &Lb4BackendKey) -> Result<(), Self::Error> {
            Ok(())
        }
        fn put_service(&mut self, _: Lb4ServiceKey, _: Lb4Service) -> Result<(), Self::Error> {
            Ok(())
        }
        fn delete_service(&mut self, _: &Lb4ServiceKey) -> Result<(), Self::Error> {
            Ok(())
        }
        fn put_backend6(&mut self, _: Lb4BackendKey, _: Lb6Backend) -> Result<(), Self::Error> {
            Ok(())
        }
        fn delete_backend6(&mut self, _: &Lb4BackendKey) -> Result<(), Self::Error> {
            Ok(())
        }
        fn put_service6(&mut self, _: Lb6ServiceKey, _: Lb4Service) -> Result<(), Self::Error> {
            Ok(())
        }
        fn delete_service6(&mut self, _: &Lb6ServiceKey) -> Result<(), Self::Error> {
            Ok(())
        }
        fn put_maglev(&mut self, _: MaglevKey, _: &MaglevTable) -> Result<(), Self::Error> {
            Ok(())
        }
        fn delete_maglev(&mut self, _: &MaglevKey) -> Result<(), Self::Error> {
            Ok(())
        }
        fn put_service_info(&mut self, _: u32, _: ServiceInfo) -> Result<(), Self::Error> {
            Ok(())
        }
        fn reset_service_counters(&mut self, _: u32) -> Result<(), Self::Error> {
            Ok(())
        }
        fn reset_backend_counters(&mut self, _: u32) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    let error = Syncer::default()
        .apply(&plan(&[(80, vec![backend(1, 8080)])]), &mut Failing)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "datapath sync of 10.96.0.10:80/tcp: No space left on device"
    );
}

#[test]
fn ipv6_services_use_the_lb6_maps_and_share_the_id_spaces() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let vip6 = ServiceAddress {
        vip: "fd00::10".parse().unwrap(),
        port: 80,
        protocol: ServiceProtocol::Tcp,
    };
    let backends6: Vec<SocketAddr> =
        vec!["[::1]:8080".parse().unwrap(), "[::1]:8081".parse().unwrap()];
    let mut plan = plan(&[(80, vec![backend(1, 8080)])]);
    plan.services
        .insert(vip6, service(80, &backends6, BackendChoice::Random));
    syncer.apply(&plan, &mut table).unwrap();
    let resolved = table.resolved();
    assert_eq!(resolved[&(vip6.vip, 80)], backends6);
    assert_eq!(resolved[&(IpAddr::V4(VIP), 80)], vec![backend(1, 8080)]);
    let ids: Vec<u32> = table
        .services
        .values()
        .chain(table.services6.values())
        .map(|s| s.service_id)
        .collect();
    assert_eq!(ids, vec![0, 1], "one service id space");
    assert_eq!(syncer.backends().count(), 3, "one backend id space");
    let key = match service_key(&vip6) {
        ServiceKey::V6(key) => key,
        ServiceKey::V4(_) => panic!("IPv6 expected"),
    };
    assert_eq!(
        ip6_from_words(key.address),
        "fd00::10".parse::<std::net::Ipv6Addr>().unwrap()
    );
    // user_ip6 words are network order: the first byte of the address first.
    assert_eq!(key.address[0].to_ne_bytes(), [0xfd, 0, 0, 0]);

    plan.services.remove(&vip6);
    syncer.apply(&plan, &mut table).unwrap();
    assert!(table.services6.is_empty() && table.backends6.is_empty());
}

#[test]
fn maglev_and_weighted_services_get_a_table_per_slot_written_before_the_flip() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let two = [backend(1, 8080), backend(2, 8080)];
    let three = [backend(1, 8080), backend(2, 8080), backend(3, 8080)];
    let with = |backends: &[SocketAddr], choice| Plan {
        services: [(address(80), service(80, backends, choice))].into(),
        not_planned: Vec::new(),
    };
    // Every step is checked by FakeTable: flags never point at a missing
    // table or one with indices beyond the slot's backends.
    syncer
        .apply(&with(&two, BackendChoice::Maglev), &mut table)
        .unwrap();
    let entry = table.services[&v4_key(&address(80))];
    assert_eq!(entry.flags, SERVICE_FLAG_MAGLEV);
    assert_eq!(table.maglev.len(), 1);
    syncer
        .apply(&with(&three, BackendChoice::Maglev), &mut table)
        .unwrap();
    assert_eq!(table.maglev.len(), 2, "the previous slot keeps its table");
    let mut weighted = with(&three, BackendChoice::Weighted);
    weighted.services.get_mut(&address(80)).unwrap().backends[0].weight = 3;
    syncer.apply(&weighted, &mut table).unwrap();
    let entry = table.services[&v4_key(&address(80))];
    assert_eq!(entry.flags, SERVICE_FLAG_WEIGHTED);
    let table_now = table.maglev[&MaglevKey {
        service_id: entry.service_id,
        slot: entry.slot,
    }];
    let first = table_now.backend_index.iter().filter(|i| **i == 0).count();
    assert!(
        (590..=640).contains(&first),
        "weight 3 of 5 owns {first} of 1021"
    );
    // Back to random: the table of the slot written now is dropped.
    syncer
        .apply(&with(&three, BackendChoice::Random), &mut table)
        .unwrap();
    assert_eq!(table.services[&v4_key(&address(80))].flags, 0);
    assert_eq!(table.maglev.len(), 1);
    // An empty Maglev service has no table and no flag (connects see no backend).
    syncer
        .apply(&with(&[], BackendChoice::Maglev), &mut table)
        .unwrap();
    assert_eq!(table.services[&v4_key(&address(80))].flags, 0);
    syncer.apply(&plan(&[]), &mut table).unwrap();
    assert!(table.maglev.is_empty(), "{:?}", table.maglev.keys());
}

#[test]
fn a_service_turning_into_a_redirect_flips_its_flag_and_mode_in_place() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let services = [(80, vec![backend(1, 8080)])];
    syncer.apply(&plan(&services), &mut table).unwrap();
    let key = v4_key(&address(80));
    let id = table.services[&key].service_id;
    assert_eq!(table.services[&key].flags, 0);
    assert_eq!(table.modes[&id], MODE_SOCKET_LB);

    // Same backends (the redirect address), new mode and listener.
    let mut redirect = plan(&services);
    let service = redirect.services.get_mut(&address(80)).unwrap();
    service.mode = ServiceMode::Redirect;
    service.listener = "l7".into();
    syncer.apply(&redirect, &mut table).unwrap();
    assert_eq!(table.services[&key].flags, SERVICE_FLAG_REDIRECT);
    assert_eq!(table.services[&key].service_id, id);
    assert_eq!(table.modes[&id], MODE_REDIRECT);
    assert_eq!(table.names[&id], "l7");
    assert_eq!(table.resolved(), expected(&services));
    assert_eq!(syncer.services().collect::<Vec<_>>(), [("l7", id)]);

    // And back.
    syncer.apply(&plan(&services), &mut table).unwrap();
    assert_eq!(table.services[&key].flags, 0);
    assert_eq!(table.modes[&id], MODE_SOCKET_LB);
}
