//! UDP service listeners without a kernel datapath: Sluice has no userspace
//! UDP proxy, so when the datapath is off (`--datapath off`, or the kernel
//! refused it under `auto`) a UDP service listener is not served at all.
//! This says so once per listener, in the log, for the listeners present
//! at start and for those LDS adds later.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use crate::listener::ListenerManager;

/// Logs, once per listener name, each UDP service listener that is not
/// served because of `reason`; keeps watching the listener set until the
/// manager is gone.
pub fn warn_unserved(listeners: &Arc<ListenerManager>, reason: String) {
    let mut changes = listeners.subscribe();
    let listeners: Weak<ListenerManager> = Arc::downgrade(listeners);
    let mut warned = BTreeSet::new();
    warn_new(&listeners, &reason, &mut warned);
    if tokio::runtime::Handle::try_current().is_err() {
        return; // no runtime (a synchronous caller): the listeners at start only
    }
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            if !warn_new(&listeners, &reason, &mut warned) {
                return;
            }
        }
    });
}

/// Warns about UDP listeners not warned about yet; false once the manager
/// is gone.
fn warn_new(
    listeners: &Weak<ListenerManager>,
    reason: &str,
    warned: &mut BTreeSet<String>,
) -> bool {
    let Some(listeners) = listeners.upgrade() else {
        return false;
    };
    for listener in listeners.configs() {
        if listener.udp_proxy.is_some() && warned.insert(listener.name.clone()) {
            tracing::warn!(
                target: "sluice::datapath",
                listener = %listener.name,
                address = %listener.address,
                "UDP service listener not served: {reason}; Sluice has no userspace UDP proxy, only the kernel datapath serves UDP services"
            );
        }
    }
    true
}
