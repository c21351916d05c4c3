//! Well-known ports, identical to Linkerd's so that existing Services,
//! NetworkPolicies and scrape configurations apply unchanged.

/// The proxy's outbound listener; iptables redirects the pod's outgoing
/// connections here.
pub const PROXY_OUTBOUND: u16 = 4140;
/// The proxy's inbound listener; iptables redirects incoming connections here,
/// and proxies (and gateways) dial it directly for mTLS.
pub const PROXY_INBOUND: u16 = 4143;
/// The proxy's admin server: `/ready`, `/live`, `/metrics`, `/shutdown`.
pub const PROXY_ADMIN: u16 = 4191;
/// The proxy's tap/control port.
pub const PROXY_CONTROL: u16 = 4190;

/// The destination service (`Destination.Get`, `GetProfile`).
pub const DESTINATION: u16 = 8086;
/// The identity service (`Identity.Certify`).
pub const IDENTITY: u16 = 8080;
/// The policy service (inbound and outbound policy APIs).
pub const POLICY: u16 = 8090;
/// The proxy injector's admission webhook.
pub const INJECTOR_WEBHOOK: u16 = 8443;

/// The multicluster gateway's mTLS port (`mc-gateway`), the proxy's inbound port.
pub const GATEWAY: u16 = PROXY_INBOUND;
/// The multicluster gateway's probe port (`mc-probe`), the proxy's admin port.
pub const GATEWAY_PROBE: u16 = PROXY_ADMIN;
