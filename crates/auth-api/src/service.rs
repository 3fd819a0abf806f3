//! Service endpoints: `/`, `/health`, `/health/live`, `/health/ready`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceInfo {
    /// Service name.
    #[cfg_attr(feature = "openapi", schema(example = "auth-service"))]
    pub name: String,
    /// Version.
    pub version: String,
    /// Where the API documentation is.
    #[cfg_attr(feature = "openapi", schema(example = "/docs"))]
    pub docs: String,
}

/// Overall or component health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "healthy"))]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Everything works.
    Healthy,
    /// Serving, with a component down (the invalidation listener).
    Degraded,
    /// Not serving (the database is unreachable).
    Unhealthy,
    /// A status this build does not know (read only; never sent).
    #[serde(other, skip_serializing)]
    Unknown,
}

/// One component's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComponentHealth {
    /// `healthy` or `unhealthy`.
    pub status: HealthStatus,
    /// For the database: `postgres` or `memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Probe time in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// For the cache: entries held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
}

/// `GET /health` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: HealthStatus,
    /// Version.
    pub version: String,
    /// Per component.
    pub components: BTreeMap<String, ComponentHealth>,
}

/// A probe's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = "ok"))]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    /// Alive, or ready.
    Ok,
    /// Not ready.
    Unavailable,
}

/// `GET /health/live` and `/health/ready` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Probe {
    /// `ok` or `unavailable`.
    pub status: ProbeStatus,
}
