//! `omo.v1.StoreService`: physical stores and their geofences (admin).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{
    auth::caller_for,
    convert::{
        Violations, check_id, check_text, optional_request_id, path, required_id, time_zone,
    },
    paging::{next_page_token, page_size, page_token},
    reply::execute,
};
use crate::{
    domain::{
        auth::Operation,
        command::SettingsCommand,
        geo::{MAX_POLYGON_VERTICES, PolygonError, check_polygon},
        model::{LatLng, Store},
    },
    engine::Engine,
    proto::{self, store_service_server::StoreService},
};

/// Time zone of a store created without one.
pub use crate::domain::model::DEFAULT_TIME_ZONE;
/// Geofence radius of a store created without one, in metres.
pub const DEFAULT_GEOFENCE_RADIUS_M: f64 = 100.0;
/// Largest geofence radius, in metres.
const MAX_GEOFENCE_RADIUS_M: f64 = 100_000.0;

pub struct StoreApi {
    engine: Arc<Engine>,
}

impl StoreApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl StoreService for StoreApi {
    async fn create_store(
        &self,
        request: Request<proto::CreateStoreRequest>,
    ) -> Result<Response<proto::CreateStoreResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageStores).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let request_id = optional_request_id(&mut v, &request.request_id);
        let store = store_in(v, request.store)?;
        let command = SettingsCommand::CreateStore(store);
        let store = execute(&self.engine, &caller, request_id.as_deref(), command).await?;
        Ok(Response::new(proto::CreateStoreResponse {
            store: Some(store_out(store)),
        }))
    }

    async fn get_store(
        &self,
        request: Request<proto::GetStoreRequest>,
    ) -> Result<Response<proto::GetStoreResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageStores).await?;
        let store_id = request.into_inner().store_id;
        required_id("store_id", &store_id)?;
        let store = self.engine.get_store(&caller, &store_id).await?;
        Ok(Response::new(proto::GetStoreResponse {
            store: Some(store_out(store)),
        }))
    }

    async fn list_stores(
        &self,
        request: Request<proto::ListStoresRequest>,
    ) -> Result<Response<proto::ListStoresResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageStores).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let size = page_size(&mut v, request.page_size);
        let after = page_token(&mut v, "ListStores", &request.page_token);
        let (size, after) = v.build(|| Some((size?, after?)))?;
        let page = self
            .engine
            .list_stores(&caller, after.as_ref(), size)
            .await?;
        Ok(Response::new(proto::ListStoresResponse {
            stores: page.items.into_iter().map(store_out).collect(),
            next_page_token: next_page_token(page.next),
        }))
    }
}

/// A store to create, with defaults filled in (time zone, geofence radius); `v` holds what the
/// rest of the request already found wrong.
pub(super) fn store_in(mut v: Violations, store: Option<proto::Store>) -> Result<Store, Status> {
    let Some(store) = store else {
        v.push("store", "is required");
        return Err(v.into_status());
    };
    check_id(&mut v, "store.store_id", &store.store_id);
    check_text(&mut v, "store.name", &store.name, 1, 200);
    let location = match store.location {
        Some(location) => lat_lng(&mut v, "store.location", location),
        None => {
            v.push("store.location", "is required");
            None
        }
    };
    let time_zone = time_zone(&mut v, "store.time_zone", &store.time_zone);
    let geofence_radius_m = radius(&mut v, store.geofence_radius_m);
    let geofence_polygon = polygon(&mut v, &store.geofence_polygon);
    v.build(|| {
        Some(Store {
            store_id: store.store_id,
            name: store.name,
            location: location?,
            time_zone: time_zone?,
            geofence_radius_m: geofence_radius_m?,
            geofence_polygon: geofence_polygon?,
        })
    })
}

/// A WGS84 coordinate: finite, latitude in [-90, 90], longitude in [-180, 180].
pub fn lat_lng(v: &mut Violations, field: &str, point: proto::LatLng) -> Option<LatLng> {
    let mut ok = true;
    for (name, value, limit) in [
        ("latitude", point.latitude, 90.0),
        ("longitude", point.longitude, 180.0),
    ] {
        if !value.is_finite() || !(-limit..=limit).contains(&value) {
            v.push(
                path(field, name),
                format!("must be a number between -{limit} and {limit}"),
            );
            ok = false;
        }
    }
    ok.then_some(LatLng {
        latitude: point.latitude,
        longitude: point.longitude,
    })
}

/// Geofence radius in metres: finite, 0..=100,000; 0 means the default.
fn radius(v: &mut Violations, value: f64) -> Option<f64> {
    if !value.is_finite() || !(0.0..=MAX_GEOFENCE_RADIUS_M).contains(&value) {
        v.push(
            "store.geofence_radius_m",
            format!("must be a number between 0 and {MAX_GEOFENCE_RADIUS_M}"),
        );
        None
    } else if value == 0.0 {
        Some(DEFAULT_GEOFENCE_RADIUS_M)
    } else {
        Some(value)
    }
}

/// A geofence polygon: empty, or a simple ring of 3 to 1,000 valid coordinates, open or closed
/// (see [`check_polygon`]). Kept as given; geofence checks normalise it.
fn polygon(v: &mut Violations, points: &[proto::LatLng]) -> Option<Vec<LatLng>> {
    const FIELD: &str = "store.geofence_polygon";
    if points.is_empty() {
        return Some(Vec::new());
    }
    // Bounds the work before each vertex is parsed (a closed ring repeats its first vertex).
    if points.len() > MAX_POLYGON_VERTICES + 1 {
        v.push(FIELD, PolygonError::VertexCount(points.len()).to_string());
        return None;
    }
    let parsed: Vec<Option<LatLng>> = points
        .iter()
        .enumerate()
        .map(|(i, point)| lat_lng(v, &format!("{FIELD}[{i}]"), *point))
        .collect();
    let ring: Vec<LatLng> = parsed.into_iter().collect::<Option<_>>()?;
    match check_polygon(&ring) {
        Ok(_) => Some(ring),
        Err(error) => {
            v.push(FIELD, error.to_string());
            None
        }
    }
}

pub fn store_out(store: Store) -> proto::Store {
    let lat_lng_out = |p: LatLng| proto::LatLng {
        latitude: p.latitude,
        longitude: p.longitude,
    };
    proto::Store {
        store_id: store.store_id,
        name: store.name,
        location: Some(lat_lng_out(store.location)),
        time_zone: store.time_zone,
        geofence_radius_m: store.geofence_radius_m,
        geofence_polygon: store
            .geofence_polygon
            .into_iter()
            .map(lat_lng_out)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::status::violated_fields;

    fn store() -> proto::Store {
        proto::Store {
            store_id: "shibuya-1".into(),
            name: "Shibuya".into(),
            location: Some(proto::LatLng {
                latitude: 35.658,
                longitude: 139.7016,
            }),
            time_zone: String::new(),
            geofence_radius_m: 0.0,
            geofence_polygon: vec![],
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let parsed = store_in(Violations::new(), Some(store())).expect("valid");
        assert_eq!(parsed.time_zone, DEFAULT_TIME_ZONE);
        assert_eq!(parsed.geofence_radius_m, DEFAULT_GEOFENCE_RADIUS_M);
    }

    #[test]
    fn bad_coordinates_are_violations() {
        let mut bad = store();
        bad.location = Some(proto::LatLng {
            latitude: f64::NAN,
            longitude: 181.0,
        });
        bad.geofence_polygon = vec![proto::LatLng::default(), proto::LatLng::default()];
        bad.geofence_radius_m = -1.0;
        let status = store_in(Violations::new(), Some(bad)).expect_err("invalid");
        let fields = violated_fields(&status);
        assert_eq!(
            fields,
            [
                "store.location.latitude",
                "store.location.longitude",
                "store.geofence_radius_m",
                "store.geofence_polygon"
            ]
        );
    }

    fn ll(latitude: f64, longitude: f64) -> proto::LatLng {
        proto::LatLng {
            latitude,
            longitude,
        }
    }

    fn square() -> Vec<proto::LatLng> {
        vec![
            ll(35.657, 139.700),
            ll(35.657, 139.702),
            ll(35.659, 139.702),
            ll(35.659, 139.700),
        ]
    }

    fn polygon_problem(polygon: Vec<proto::LatLng>) -> Vec<String> {
        let mut bad = store();
        bad.geofence_polygon = polygon;
        match store_in(Violations::new(), Some(bad)) {
            Ok(_) => Vec::new(),
            Err(status) => violated_fields(&status),
        }
    }

    #[test]
    fn time_zones_must_be_known_to_the_tz_database() {
        for (name, ok) in [
            ("Asia/Tokyo", true),
            ("Europe/Paris", true),
            ("UTC", true),
            ("Asia/Tokio", false),
            ("Mars/Olympus_Mons", false),
            ("+09:00", false),
        ] {
            let mut candidate = store();
            candidate.time_zone = name.into();
            match store_in(Violations::new(), Some(candidate)) {
                Ok(parsed) => assert!(ok && parsed.time_zone == name, "{name}"),
                Err(status) => {
                    assert!(!ok, "{name}");
                    assert_eq!(violated_fields(&status), ["store.time_zone"]);
                }
            }
        }
    }

    #[test]
    fn polygons_are_simple_rings_open_or_closed() {
        assert!(polygon_problem(square()).is_empty());
        let mut closed = square();
        closed.push(closed[0]);
        let mut candidate = store();
        candidate.geofence_polygon = closed.clone();
        let parsed = store_in(Violations::new(), Some(candidate)).expect("closed ring");
        assert_eq!(parsed.geofence_polygon.len(), 5, "kept as given");

        let bow_tie = vec![square()[0], square()[2], square()[1], square()[3]];
        assert_eq!(polygon_problem(bow_tie), ["store.geofence_polygon"]);
        let mut repeated = square();
        repeated.insert(1, repeated[0]);
        assert_eq!(polygon_problem(repeated), ["store.geofence_polygon"]);
        let mut bad_vertex = square();
        bad_vertex[1].longitude = f64::NAN;
        assert_eq!(
            polygon_problem(bad_vertex),
            ["store.geofence_polygon[1].longitude"]
        );
    }

    #[test]
    fn polygons_have_at_most_a_thousand_vertices() {
        let circle = |n: usize| -> Vec<proto::LatLng> {
            (0..n)
                .map(|i| {
                    let angle = i as f64 * std::f64::consts::TAU / n as f64;
                    ll(35.0 + 0.001 * angle.sin(), 139.0 + 0.001 * angle.cos())
                })
                .collect()
        };
        assert!(polygon_problem(circle(1_000)).is_empty());
        let mut closed = circle(1_000);
        closed.push(closed[0]);
        assert!(polygon_problem(closed).is_empty());
        assert_eq!(polygon_problem(circle(1_001)), ["store.geofence_polygon"]);
        assert_eq!(
            polygon_problem(vec![proto::LatLng::default(); 5_000]),
            ["store.geofence_polygon"]
        );
    }
}
