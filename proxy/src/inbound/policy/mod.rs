//! Inbound authorization policy: what the policy controller says of each
//! port ([`watch`]) and deciding with it ([`authorize`], with the request
//! matching of [`crate::route_match`]); `Inbound` asks
//! per connection (opaque traffic) and per request (HTTP), and counts each
//! decision with Linkerd's metric names ([`metrics`]).

pub(crate) mod authorize;
pub(crate) mod metrics;
pub(crate) mod watch;
