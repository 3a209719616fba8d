//! HTTP: the connection manager (downstream HTTP/1.1 and HTTP/2), HTTP
//! filters, and the router.

pub mod body;
pub mod connection_manager;
pub mod rds;
pub mod router;
