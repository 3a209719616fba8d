//! The listeners that are live, changeable while traffic flows (LDS).
//!
//! Each bound listener is a [`ListenerSlot`]: its sockets (one per worker,
//! `SO_REUSEPORT`) and its current [`Generation`] (compiled config plus the
//! drain control of the connections accepted under it). Replacing a
//! listener on the same address swaps the generation: the accept loops
//! keep their sockets (no connection is refused), new connections get the
//! new config, and the old generation's connections drain. Removing a
//! listener stops its accept loops and drains its connections. Listeners
//! with `bind_to_port: false` have no sockets; they are kept for the
//! kernel datapath and `/config_dump`, and serve the connections the kernel
//! redirects to Sluice's redirect address ([`ListenerManager::serve_redirect`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use super::bind::bind_listener_sockets;
use super::config::ListenerConfig;
use super::redirect::{OriginalDestinations, RedirectAcceptor, RedirectStats};
use super::virtual_listeners::VirtualListeners;
use crate::drain::{self, DrainControl};

/// One compiled version of a listener and the connections it accepted.
pub struct Generation {
    pub config: Arc<ListenerConfig>,
    pub drain: DrainControl,
}

/// A bound listener: the sockets stay, generations come and go.
pub struct ListenerSlot {
    pub name: String,
    pub address: SocketAddr,
    current: ArcSwap<Generation>,
    stop: watch::Sender<bool>,
}

impl ListenerSlot {
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Becomes true when the listener must stop accepting.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// Sent to a worker: what to serve on this (already listening) socket.
pub struct ServeCommand {
    pub socket: std::net::TcpListener,
    pub serve: Serve,
}

pub enum Serve {
    /// A bound listener.
    Listener(Arc<ListenerSlot>),
    /// The redirect address: connections dispatched by original destination.
    Redirect(RedirectAcceptor),
}

/// What [`ListenerManager::add_or_update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerChange {
    Added,
    /// Same address: new connections get the new config, old ones drain.
    Updated,
    /// A listener without sockets (`bind_to_port: false`).
    Virtual,
}

/// How connections are asked to close when a listener goes away.
#[derive(Debug, Clone, Copy)]
pub struct DrainSettings {
    pub period: Duration,
    pub immediate: bool,
}

pub struct ListenerManager {
    workers: Vec<mpsc::UnboundedSender<ServeCommand>>,
    slots: Mutex<BTreeMap<String, Arc<ListenerSlot>>>,
    virtual_listeners: VirtualListeners,
    /// Stops the redirect address's accept loops (shutdown).
    redirect_stop: watch::Sender<bool>,
    /// The redirect addresses (IPv4, IPv6), once served (no listener may
    /// bind over them).
    redirect_addresses: Mutex<Vec<SocketAddr>>,
    drain: DrainSettings,
    /// Bumped whenever a listener is added, replaced or removed.
    changes: watch::Sender<u64>,
}

impl ListenerManager {
    /// A manager that hands sockets to `workers` (one channel per worker).
    pub fn new(workers: Vec<mpsc::UnboundedSender<ServeCommand>>, drain: DrainSettings) -> Self {
        ListenerManager {
            workers,
            slots: Mutex::new(BTreeMap::new()),
            virtual_listeners: VirtualListeners::default(),
            redirect_stop: watch::Sender::new(false),
            redirect_addresses: Mutex::new(Vec::new()),
            drain,
            changes: watch::Sender::new(0),
        }
    }

    /// Tells when the set of listeners changed (the kernel datapath
    /// re-derives its plan).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|version| *version += 1);
    }

    /// Adds a listener, or replaces the one of the same name. A bind
    /// failure leaves everything as it was and says why.
    pub fn add_or_update(&self, config: ListenerConfig) -> Result<ListenerChange, String> {
        let config = Arc::new(config);
        if !config.bind_to_port {
            self.remove_bound(&config.name);
            self.virtual_listeners.insert(config, self.drain);
            self.changed();
            return Ok(ListenerChange::Virtual);
        }
        self.virtual_listeners.remove(&config.name, self.drain);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(&config.name) {
            let same_address = slot.address == config.address
                || (config.address.port() == 0 && slot.address.ip() == config.address.ip());
            if same_address {
                let previous = slot.current.swap(Arc::new(Generation {
                    config,
                    drain: drain::channel().0,
                }));
                previous
                    .drain
                    .start(self.drain.period, self.drain.immediate);
                self.changed();
                return Ok(ListenerChange::Updated);
            }
        }
        // A new address: bind first, so a failure changes nothing.
        let redirect_address = self
            .redirect_addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .find(|r| overlaps(*r, config.address));
        if let Some(redirect) = redirect_address {
            return Err(format!(
                "listener '{}': {} overlaps the datapath redirect address {redirect}",
                config.name, config.address
            ));
        }
        let sockets = bind_listener_sockets(config.address, self.workers.len())
            .map_err(|error| format!("listener '{}': {error}", config.name))?;
        let address = sockets
            .first()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or(config.address);
        if let Some(old) = slots.remove(&config.name) {
            self.retire(&old);
        }
        let slot = Arc::new(ListenerSlot {
            name: config.name.clone(),
            address,
            current: ArcSwap::from_pointee(Generation {
                config,
                drain: drain::channel().0,
            }),
            stop: watch::Sender::new(false),
        });
        tracing::info!(target: "sluice::listener", name = %slot.name, %address, "listening");
        for (worker, socket) in self.workers.iter().zip(sockets) {
            let _ = worker.send(ServeCommand {
                socket,
                serve: Serve::Listener(slot.clone()),
            });
        }
        slots.insert(slot.name.clone(), slot);
        self.changed();
        Ok(ListenerChange::Added)
    }

    /// Removes a listener: it stops accepting and its connections drain.
    pub fn remove(&self, name: &str) -> bool {
        let was_virtual = self.virtual_listeners.remove(name, self.drain);
        let removed = self.remove_bound(name) || was_virtual;
        if removed {
            self.changed();
        }
        removed
    }

    fn remove_bound(&self, name: &str) -> bool {
        let removed = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        match removed {
            Some(slot) => {
                self.retire(&slot);
                true
            }
            None => false,
        }
    }

    fn retire(&self, slot: &ListenerSlot) {
        slot.stop.send_replace(true);
        slot.current()
            .drain
            .start(self.drain.period, self.drain.immediate);
    }

    /// `/drain_listeners`: with `graceful`, connections are asked to close
    /// over the drain period while listeners keep accepting, and the
    /// listeners close at its end; otherwise they close now.
    pub fn drain_all(&self, graceful: bool) {
        let slots: Vec<Arc<ListenerSlot>> = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for generation in self.virtual_listeners.generations() {
            generation
                .drain
                .start(self.drain.period, self.drain.immediate);
        }
        if graceful {
            let period = self.drain.period;
            let stop = self.redirect_stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(period).await;
                stop.send_replace(true);
            });
        } else {
            self.redirect_stop.send_replace(true);
        }
        for slot in slots {
            if graceful {
                slot.current()
                    .drain
                    .start(self.drain.period, self.drain.immediate);
                let period = self.drain.period;
                let immediate = self.drain.immediate;
                tokio::spawn(async move {
                    tokio::time::sleep(period).await;
                    slot.stop.send_replace(true);
                    slot.current().drain.start(period, immediate);
                });
            } else {
                self.retire(&slot);
            }
        }
    }

    /// Shutdown: every listener stops accepting; connections close as soon
    /// as their in-flight requests finish.
    pub fn shutdown(&self) {
        for slot in self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            slot.stop.send_replace(true);
            slot.current().drain.start(self.drain.period, true);
        }
        self.redirect_stop.send_replace(true);
        for generation in self.virtual_listeners.generations() {
            generation.drain.start(self.drain.period, true);
        }
    }

    /// (name, bound address) of every bound listener, for `/listeners`.
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|slot| (slot.name.clone(), slot.address))
            .collect()
    }

    /// The current config of every listener, bound or virtual, by name.
    pub fn configs(&self) -> Vec<Arc<ListenerConfig>> {
        let mut configs: Vec<Arc<ListenerConfig>> = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|slot| slot.current().config.clone())
            .collect();
        configs.extend(
            self.virtual_listeners
                .generations()
                .into_iter()
                .map(|generation| generation.config.clone()),
        );
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        configs
    }

    /// Connections still open on any listener, bound or virtual (all
    /// generations share their listener's stats).
    pub fn active_connections(&self) -> i64 {
        let bound: i64 = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|slot| slot.current().config.stats.downstream_cx_active.value())
            .sum();
        let redirected: i64 = self
            .virtual_listeners
            .generations()
            .iter()
            .map(|generation| generation.config.stats.downstream_cx_active.value())
            .sum();
        bound + redirected
    }

    /// The `bind_to_port: false` listener that serves a connection the
    /// kernel redirected from `original_destination` (exact address first,
    /// then the wildcard address on the same port), at its current generation.
    pub fn virtual_listener_for(
        &self,
        original_destination: SocketAddr,
    ) -> Option<Arc<Generation>> {
        self.virtual_listeners.for_destination(original_destination)
    }

    /// Starts accepting redirected connections on `address` (once per
    /// address: the IPv4 and the IPv6 redirect address each): one
    /// `SO_REUSEPORT` socket per worker, each with its own lookup of
    /// original destinations from `destinations()`. Fails, changing
    /// nothing, if a bound listener has the address or it cannot be bound.
    pub fn serve_redirect(
        self: &Arc<Self>,
        address: SocketAddr,
        mut destinations: impl FnMut() -> Result<Box<dyn OriginalDestinations>, String>,
        stats: RedirectStats,
    ) -> Result<(), String> {
        if let Some((name, _)) = self
            .addresses()
            .into_iter()
            .find(|(_, bound)| overlaps(*bound, address))
        {
            return Err(format!(
                "redirect address {address} overlaps listener '{name}'"
            ));
        }
        let mut acceptors = Vec::with_capacity(self.workers.len());
        for _ in 0..self.workers.len() {
            acceptors.push(RedirectAcceptor {
                destinations: destinations()?,
                listeners: Arc::downgrade(self),
                stats: stats.clone(),
                stopped: self.redirect_stop.subscribe(),
            });
        }
        let sockets = bind_listener_sockets(address, self.workers.len())
            .map_err(|error| format!("redirect address: {error}"))?;
        self.redirect_addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(address);
        tracing::info!(target: "sluice::listener", %address, "accepting redirected connections");
        for ((worker, socket), acceptor) in self.workers.iter().zip(sockets).zip(acceptors) {
            let _ = worker.send(ServeCommand {
                socket,
                serve: Serve::Redirect(acceptor),
            });
        }
        Ok(())
    }
}

/// Whether two listening addresses would take each other's connections:
/// the same port on the same or a wildcard address.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
