//! Alert routing as the API shows it: the routes from alerts to notification channels
//! (`GET /api/v1/alerts/routes`: [`RouteList`] of [`Route`]).

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Route {
    pub id: i64,
    pub channel_id: i64,
    pub channel: String,
    pub min_severity: String,
    pub matchers: String,
    pub repeat_secs: i32,
    pub send_resolved: bool,
    pub created_at: String,
    pub created_by: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteList {
    pub routes: Vec<Route>,
}
