//! The hasher of maps looked up on every request (cluster by name, virtual
//! host by domain, routes by path prefix). Their keys come from
//! configuration, so a request cannot grow a chain; std's SipHash costs a
//! few hundred instructions per lookup where foldhash costs tens.

/// A `HashMap` with the per-request hasher.
pub type FastHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
