//! Unit tests of the plan → maps diff, against an in-memory table that checks
//! after every single write that no service entry points at a missing backend.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::datapath::plan::PlannedService;

#[derive(Default)]
struct FakeTable {
    services: BTreeMap<Lb4ServiceKey, Lb4Service>,
    backends: BTreeMap<Lb4BackendKey, Lb4Backend>,
    writes: usize,
    reset_backend_ids: Vec<u32>,
    names: BTreeMap<u32, String>,
}

impl FakeTable {
    /// What a connect in the kernel could see at this instant.
    fn assert_consistent(&self) {
        for (key, service) in &self.services {
            for index in 0..service.backend_count {
                let backend = Lb4BackendKey {
                    service_id: service.service_id,
                    slot: service.slot,
                    index,
                };
                assert!(
                    self.backends.contains_key(&backend),
                    "service {key:?} points at missing backend {backend:?} after write {}",
                    self.writes
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
    fn resolved(&self) -> BTreeMap<(Ipv4Addr, u16), Vec<SocketAddrV4>> {
        self.services
            .iter()
            .map(|(key, service)| {
                let backends = (0..service.backend_count)
                    .map(|index| {
                        let b = self.backends[&Lb4BackendKey {
                            service_id: service.service_id,
                            slot: service.slot,
                            index,
                        }];
                        SocketAddrV4::new(
                            Ipv4Addr::from(u32::from_be(b.address)),
                            u16::from_be(b.port),
                        )
                    })
                    .collect();
                (
                    (
                        Ipv4Addr::from(u32::from_be(key.address)),
                        u16::from_be(key.port),
                    ),
                    backends,
                )
            })
            .collect()
    }
}

impl LbTable for FakeTable {
    type Error = String;
    fn put_backend(&mut self, key: Lb4BackendKey, value: Lb4Backend) -> Result<(), String> {
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
    fn put_service_info(&mut self, service_id: u32, info: ServiceInfo) -> Result<(), String> {
        self.names
            .insert(service_id, info.listener_name().to_string());
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

fn address(port: u16) -> ServiceAddress {
    ServiceAddress {
        vip: Ipv4Addr::new(10, 96, 0, 10),
        port,
    }
}

fn backend(last: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, last), port)
}

fn plan(services: &[(u16, Vec<SocketAddrV4>)]) -> Plan {
    Plan {
        services: services
            .iter()
            .map(|(port, backends)| {
                (
                    address(*port),
                    PlannedService {
                        listener: format!("svc{port}"),
                        cluster: "c".into(),
                        backends: backends.clone(),
                    },
                )
            })
            .collect(),
        not_planned: Vec::new(),
    }
}

fn expected(services: &[(u16, Vec<SocketAddrV4>)]) -> BTreeMap<(Ipv4Addr, u16), Vec<SocketAddrV4>> {
    services
        .iter()
        .map(|(port, backends)| ((Ipv4Addr::new(10, 96, 0, 10), *port), backends.clone()))
        .collect()
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
    let id = table.services[&service_key(&address(81))].service_id;
    assert_eq!(table.names[&id], "svc81");

    let second = [(80, vec![backend(3, 8080)]), (81, vec![backend(1, 8080)])];
    syncer.apply(&plan(&second), &mut table).unwrap();
    assert_eq!(table.resolved(), expected(&second));
    assert_eq!(table.services[&service_key(&address(80))].slot, 1);
    // The other service was not touched.
    assert_eq!(table.services[&service_key(&address(81))].slot, 0);

    let third = [(
        80,
        vec![backend(4, 8080), backend(5, 8080), backend(6, 8080)],
    )];
    syncer.apply(&plan(&third), &mut table).unwrap();
    assert_eq!(table.resolved(), expected(&third));
    // Slot 0 reused: its old entries were overwritten, none left beyond 3;
    // slot 1 keeps the previous list for connects that read the old entry.
    let id = table.services[&service_key(&address(80))].service_id;
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
        let backends: Vec<SocketAddrV4> = (1..=200)
            .map(|last| backend(last, 9000 + generation))
            .collect();
        syncer
            .apply(&plan(&[(80, backends.clone())]), &mut table)
            .unwrap();
        let in_use: BTreeMap<SocketAddrV4, u32> = syncer.backends().collect();
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
fn shrinking_and_emptying_a_service_keeps_every_step_consistent() {
    let mut table = FakeTable::default();
    let mut syncer = Syncer::default();
    let many: Vec<SocketAddrV4> = (1..=5).map(|i| backend(i, 9000)).collect();
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
    let key = service_key(&address(80));
    assert_eq!(key.address.to_ne_bytes(), [10, 96, 0, 10]);
    assert_eq!(key.port.to_ne_bytes(), [0, 80]);
    assert_eq!(key.protocol, 6);
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
