//! Linkerd viz's `linkerd2.viz.Api` messages (`viz.proto`), the ones the
//! metrics-api answers, declared with their field numbers so that a client
//! built from Linkerd's proto (its CLI, its dashboard, a user's tool) reads
//! them as its own. `Resource` and `ResourceSelection` are shared with the
//! tap API ([`crate::tap_api`]).

pub use crate::tap_api::{Resource, ResourceSelection};

/// `viz.Empty`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Empty {}

/// `viz.ResourceError`: why a resource has no answer.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResourceError {
    /// The resource.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub error: String,
}

/// `viz.StatSummaryRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatSummaryRequest {
    /// What to report on.
    #[prost(message, optional, tag = "1")]
    pub selector: Option<ResourceSelection>,
    /// The window (`1m`).
    #[prost(string, tag = "2")]
    pub time_window: String,
    /// Only what went to or came from another resource.
    #[prost(oneof = "Outbound", tags = "3, 4, 5")]
    pub outbound: Option<Outbound>,
    /// Objects and pod counts only, no figures.
    #[prost(bool, tag = "6")]
    pub skip_stats: bool,
    /// TCP figures too.
    #[prost(bool, tag = "7")]
    pub tcp_stats: bool,
}

/// `StatSummaryRequest.outbound` and `TopRoutesRequest.outbound`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Outbound {
    /// Every caller.
    #[prost(message, tag = "3")]
    None(Empty),
    /// What each resource sent to this one.
    #[prost(message, tag = "4")]
    ToResource(Resource),
    /// What this one sent to each resource.
    #[prost(message, tag = "5")]
    FromResource(Resource),
}

/// `viz.StatSummaryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatSummaryResponse {
    /// The tables, or why not.
    #[prost(oneof = "StatSummaryAnswer", tags = "1, 2")]
    pub response: Option<StatSummaryAnswer>,
}

/// `StatSummaryResponse.response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum StatSummaryAnswer {
    /// The tables.
    #[prost(message, tag = "1")]
    Ok(StatSummaryOk),
    /// Why not.
    #[prost(message, tag = "2")]
    Error(ResourceError),
}

/// `StatSummaryResponse.Ok`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatSummaryOk {
    /// One table per resource type asked for.
    #[prost(message, repeated, tag = "1")]
    pub stat_tables: Vec<StatTable>,
}

/// `viz.BasicStats`: counts over the window and latency percentiles.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BasicStats {
    /// Successful responses.
    #[prost(uint64, tag = "1")]
    pub success_count: u64,
    /// Failed responses.
    #[prost(uint64, tag = "2")]
    pub failure_count: u64,
    /// p50 in milliseconds.
    #[prost(uint64, tag = "3")]
    pub latency_ms_p50: u64,
    /// p95 in milliseconds.
    #[prost(uint64, tag = "4")]
    pub latency_ms_p95: u64,
    /// p99 in milliseconds.
    #[prost(uint64, tag = "5")]
    pub latency_ms_p99: u64,
    /// Successful attempts (retries included).
    #[prost(uint64, tag = "6")]
    pub actual_success_count: u64,
    /// Failed attempts (retries included).
    #[prost(uint64, tag = "7")]
    pub actual_failure_count: u64,
}

/// `viz.TcpStats`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct TcpStats {
    /// Connections open now.
    #[prost(uint64, tag = "1")]
    pub open_connections: u64,
    /// Bytes read over the window.
    #[prost(uint64, tag = "2")]
    pub read_bytes_total: u64,
    /// Bytes written over the window.
    #[prost(uint64, tag = "3")]
    pub write_bytes_total: u64,
}

/// `viz.StatTable`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatTable {
    /// The rows.
    #[prost(oneof = "Table", tags = "1")]
    pub table: Option<Table>,
}

/// `StatTable.table`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Table {
    /// Rows of resources with pods.
    #[prost(message, tag = "1")]
    PodGroup(PodGroup),
}

/// `StatTable.PodGroup`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodGroup {
    /// One per resource.
    #[prost(message, repeated, tag = "1")]
    pub rows: Vec<Row>,
}

/// `StatTable.PodGroup.Row` (the fields the metrics-api fills).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Row {
    /// The resource.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// The window the figures cover.
    #[prost(string, tag = "2")]
    pub time_window: String,
    /// Its pods that run a proxy.
    #[prost(uint64, tag = "3")]
    pub meshed_pod_count: u64,
    /// Its pending or running pods.
    #[prost(uint64, tag = "4")]
    pub running_pod_count: u64,
    /// The figures (none without traffic).
    #[prost(message, optional, tag = "5")]
    pub stats: Option<BasicStats>,
    /// Its pods that failed.
    #[prost(uint64, tag = "6")]
    pub failed_pod_count: u64,
    /// TCP figures.
    #[prost(message, optional, tag = "8")]
    pub tcp_stats: Option<TcpStats>,
    /// A pod's status (pod rows).
    #[prost(string, tag = "9")]
    pub status: String,
}

/// `viz.EdgesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EdgesRequest {
    /// The resource type (and namespace) whose edges.
    #[prost(message, optional, tag = "1")]
    pub selector: Option<ResourceSelection>,
}

/// `viz.EdgesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EdgesResponse {
    /// The edges, or why not.
    #[prost(oneof = "EdgesAnswer", tags = "1, 2")]
    pub response: Option<EdgesAnswer>,
}

/// `EdgesResponse.response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EdgesAnswer {
    /// The edges.
    #[prost(message, tag = "1")]
    Ok(EdgesOk),
    /// Why not.
    #[prost(message, tag = "2")]
    Error(ResourceError),
}

/// `EdgesResponse.Ok`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EdgesOk {
    /// The edges.
    #[prost(message, repeated, tag = "1")]
    pub edges: Vec<Edge>,
}

/// `viz.Edge`: one caller and callee, and the identities each side saw.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Edge {
    /// The caller.
    #[prost(message, optional, tag = "1")]
    pub src: Option<Resource>,
    /// The callee.
    #[prost(message, optional, tag = "2")]
    pub dst: Option<Resource>,
    /// The caller's identity, as the callee saw it.
    #[prost(string, tag = "3")]
    pub client_id: String,
    /// The callee's identity, as the caller saw it.
    #[prost(string, tag = "4")]
    pub server_id: String,
    /// Why there is no identity.
    #[prost(string, tag = "5")]
    pub no_identity_msg: String,
}

/// `viz.TopRoutesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopRoutesRequest {
    /// The Service, or the workload.
    #[prost(message, optional, tag = "1")]
    pub selector: Option<ResourceSelection>,
    /// The window (`1m`).
    #[prost(string, tag = "2")]
    pub time_window: String,
    /// The Service a workload's requests went to.
    #[prost(oneof = "TopRoutesOutbound", tags = "3, 7")]
    pub outbound: Option<TopRoutesOutbound>,
}

/// `TopRoutesRequest.outbound`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum TopRoutesOutbound {
    /// The selector's own routes.
    #[prost(message, tag = "3")]
    None(Empty),
    /// What the selected workload sent to this Service.
    #[prost(message, tag = "7")]
    ToResource(Resource),
}

/// `viz.TopRoutesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopRoutesResponse {
    /// The tables, or why not.
    #[prost(oneof = "TopRoutesAnswer", tags = "2, 3")]
    pub response: Option<TopRoutesAnswer>,
}

/// `TopRoutesResponse.response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum TopRoutesAnswer {
    /// Why not.
    #[prost(message, tag = "2")]
    Error(ResourceError),
    /// The tables.
    #[prost(message, tag = "3")]
    Ok(TopRoutesOk),
}

/// `TopRoutesResponse.Ok`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopRoutesOk {
    /// One table per resource.
    #[prost(message, repeated, tag = "1")]
    pub routes: Vec<RouteTable>,
}

/// `viz.RouteTable`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RouteTable {
    /// One per route.
    #[prost(message, repeated, tag = "1")]
    pub rows: Vec<RouteRow>,
    /// The resource the routes are of.
    #[prost(string, tag = "2")]
    pub resource: String,
}

/// `viz.RouteTable.Row`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RouteRow {
    /// The route (`[DEFAULT]` for the rest).
    #[prost(string, tag = "1")]
    pub route: String,
    /// The window the figures cover.
    #[prost(string, tag = "2")]
    pub time_window: String,
    /// The figures (none without traffic).
    #[prost(message, optional, tag = "5")]
    pub stats: Option<BasicStats>,
    /// The Service the route is of (its authority).
    #[prost(string, tag = "6")]
    pub authority: String,
}

/// `viz.ListServicesRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListServicesRequest {
    /// The namespace (empty: every one).
    #[prost(string, tag = "1")]
    pub namespace: String,
}

/// `viz.ListServicesResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListServicesResponse {
    /// The Services.
    #[prost(message, repeated, tag = "1")]
    pub services: Vec<Service>,
}

/// `viz.Service`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Service {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its namespace.
    #[prost(string, tag = "2")]
    pub namespace: String,
}

/// `viz.SelfCheckRequest`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct SelfCheckRequest {}

/// `viz.SelfCheckResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SelfCheckResponse {
    /// One per check.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<CheckResult>,
}

/// `viz.CheckStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CheckStatus {
    /// It passed.
    Ok = 0,
    /// It failed.
    Fail = 1,
    /// It could not be run.
    Error = 2,
}

/// `viz.CheckResult` (Linkerd's proto spells its fields in CamelCase).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CheckResult {
    /// The part checked.
    #[prost(string, tag = "1")]
    pub subsystem_name: String,
    /// What was checked.
    #[prost(string, tag = "2")]
    pub check_description: String,
    /// The verdict.
    #[prost(enumeration = "CheckStatus", tag = "3")]
    pub status: i32,
    /// What to tell the user.
    #[prost(string, tag = "4")]
    pub friendly_message_to_user: String,
}
