//! Geometry on WGS84: geodesic distances, store geofences (a radius or a polygon) and the
//! validation of geofence polygons.
//!
//! Distances are geodesic on the WGS84 ellipsoid (Karney's algorithm, through the `geo` crate),
//! because a radius fence is promised as "geodesic distance ≤ radius". Polygons are tested in the
//! plane of (longitude, latitude) degrees: a store-sized polygon (tens to hundreds of metres)
//! differs from its geodesic counterpart by far less than a phone's GPS error, and the planar
//! test is exact, cheap and robust. A polygon may therefore not span the antimeridian.

use geo::{
    Coord, Distance, Geodesic, Intersects, Line, LineString, Point, Polygon,
    kernels::{Kernel, Orientation, RobustKernel},
};

use super::model::{LatLng, Store};

/// Fewest distinct vertices of a geofence polygon.
pub const MIN_POLYGON_VERTICES: usize = 3;
/// Most distinct vertices of a geofence polygon (the closing repeat of the first vertex, when
/// given, is not counted).
pub const MAX_POLYGON_VERTICES: usize = 1_000;

/// Why a coordinate is not a WGS84 position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CoordinateError {
    #[error("latitude must be a number between -90 and 90")]
    Latitude,
    #[error("longitude must be a number between -180 and 180")]
    Longitude,
}

/// Why a ring of coordinates is not a geofence polygon. Indexes are those of the input slice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolygonError {
    #[error(
        "must have {MIN_POLYGON_VERTICES} to {MAX_POLYGON_VERTICES} vertices (not counting a closing repeat of the first), has {0}"
    )]
    VertexCount(usize),
    #[error("vertex {index}: {error}")]
    Coordinate {
        index: usize,
        error: CoordinateError,
    },
    #[error("vertex {index} repeats the vertex before it")]
    RepeatedVertex { index: usize },
    #[error("the edge from vertex {index} spans more than 180 degrees of longitude (antimeridian)")]
    CrossesAntimeridian { index: usize },
    #[error("the edges from vertex {first} and from vertex {second} intersect (self-intersection)")]
    SelfIntersection { first: usize, second: usize },
}

/// Checks that `point` is a finite latitude in [-90, 90] and longitude in [-180, 180].
pub fn check_coordinate(point: LatLng) -> Result<(), CoordinateError> {
    if !point.latitude.is_finite() || !(-90.0..=90.0).contains(&point.latitude) {
        Err(CoordinateError::Latitude)
    } else if !point.longitude.is_finite() || !(-180.0..=180.0).contains(&point.longitude) {
        Err(CoordinateError::Longitude)
    } else {
        Ok(())
    }
}

/// Geodesic (WGS84) distance between two valid positions, in metres.
pub fn distance_m(a: LatLng, b: LatLng) -> f64 {
    Geodesic.distance(point(a), point(b))
}

/// `geo` works in (x, y) = (longitude, latitude).
fn point(p: LatLng) -> Point<f64> {
    Point::new(p.longitude, p.latitude)
}

fn coord(p: LatLng) -> Coord<f64> {
    Coord {
        x: p.longitude,
        y: p.latitude,
    }
}

/// Validates a geofence ring and returns its distinct vertices (open: the first vertex is not
/// repeated at the end).
///
/// A ring may be given open (first ≠ last; the closing edge is implied) or explicitly closed
/// (first == last, as GeoJSON writes it); both mean the same polygon. Checks, in order: vertex
/// count, coordinates, repeated consecutive vertices (a zero-length edge), edges across the
/// antimeridian, and self-intersection (no two non-adjacent edges may touch, and adjacent edges
/// may not fold back over each other).
pub fn check_polygon(ring: &[LatLng]) -> Result<Vec<LatLng>, PolygonError> {
    let open = open_ring(ring);
    if !(MIN_POLYGON_VERTICES..=MAX_POLYGON_VERTICES).contains(&open.len()) {
        return Err(PolygonError::VertexCount(open.len()));
    }
    for (index, vertex) in open.iter().enumerate() {
        check_coordinate(*vertex).map_err(|error| PolygonError::Coordinate { index, error })?;
    }
    for index in 0..open.len() {
        let (a, b) = edge(open, index);
        if a == b {
            return Err(PolygonError::RepeatedVertex {
                index: (index + 1) % open.len(),
            });
        }
        if (a.longitude - b.longitude).abs() > 180.0 {
            return Err(PolygonError::CrossesAntimeridian { index });
        }
    }
    check_simple(open)?;
    Ok(open.to_vec())
}

/// The ring without its closing repeat of the first vertex, if it has one.
fn open_ring(ring: &[LatLng]) -> &[LatLng] {
    match ring {
        [first, .., last] if first == last => &ring[..ring.len() - 1],
        _ => ring,
    }
}

/// Edge `index` of an open ring: from vertex `index` to the next (the last wraps to the first).
fn edge(open: &[LatLng], index: usize) -> (LatLng, LatLng) {
    (open[index], open[(index + 1) % open.len()])
}

fn line(open: &[LatLng], index: usize) -> Line<f64> {
    let (a, b) = edge(open, index);
    Line::new(coord(a), coord(b))
}

/// No self-intersection. Quadratic in the vertices, which the 1,000-vertex limit bounds (half a
/// million cheap segment tests, done once when a store is created).
fn check_simple(open: &[LatLng]) -> Result<(), PolygonError> {
    let n = open.len();
    for first in 0..n {
        if folds_back(open, first) {
            return Err(PolygonError::SelfIntersection {
                first,
                second: (first + 1) % n,
            });
        }
        let a = line(open, first);
        // Edges first+1 (and, for first == 0, the last one) share a vertex with `first`.
        let last = if first == 0 { n - 1 } else { n };
        for second in first + 2..last {
            if a.intersects(&line(open, second)) {
                return Err(PolygonError::SelfIntersection { first, second });
            }
        }
    }
    Ok(())
}

/// Adjacent edges always share their common vertex; they overlap beyond it only when the second
/// turns straight back along the first (collinear and pointing backwards).
fn folds_back(open: &[LatLng], index: usize) -> bool {
    let (a, b) = edge(open, index);
    let (_, c) = edge(open, (index + 1) % open.len());
    let (ux, uy) = (b.longitude - a.longitude, b.latitude - a.latitude);
    let (wx, wy) = (c.longitude - b.longitude, c.latitude - b.latitude);
    let collinear = RobustKernel::orient2d(coord(a), coord(b), coord(c)) == Orientation::Collinear;
    collinear && ux * wx + uy * wy < 0.0
}

/// The area of a store in which a member counts as inside it.
#[derive(Debug, Clone, PartialEq)]
pub enum Geofence {
    /// Geodesic distance to `center` at most `radius_m` (boundary inclusive).
    Radius { center: LatLng, radius_m: f64 },
    /// Inside the polygon or on its boundary (planar in longitude/latitude).
    Polygon(Polygon<f64>),
}

impl Geofence {
    /// A polygon fence from a ring (open or closed, see [`check_polygon`]).
    pub fn polygon(ring: &[LatLng]) -> Result<Self, PolygonError> {
        let open = check_polygon(ring)?;
        let exterior = LineString::from(open.into_iter().map(coord).collect::<Vec<_>>());
        // `Polygon::new` closes the ring itself.
        Ok(Geofence::Polygon(Polygon::new(exterior, Vec::new())))
    }

    /// A store's fence: its polygon when it has one (the polygon replaces the radius), else the
    /// radius around its location.
    pub fn of_store(store: &Store) -> Result<Self, PolygonError> {
        if store.geofence_polygon.is_empty() {
            Ok(Geofence::Radius {
                center: store.location,
                radius_m: store.geofence_radius_m,
            })
        } else {
            Geofence::polygon(&store.geofence_polygon)
        }
    }

    /// Whether a (valid) position is inside the fence; the boundary counts as inside.
    pub fn contains(&self, position: LatLng) -> bool {
        match self {
            Geofence::Radius { center, radius_m } => distance_m(*center, position) <= *radius_m,
            Geofence::Polygon(polygon) => polygon.intersects(&point(position)),
        }
    }

    /// The farthest geodesic distance from `center` that any point of the fence reaches, in
    /// metres, so that a spatial index keyed on `center` finds every fence that may contain a
    /// position. For a polygon it is the farthest vertex: in the plane the farthest point of a
    /// segment from a point is one of its ends, and at store scale the plane is the geodesic to
    /// well under a metre (the index adds its own margin).
    pub fn bounding_radius_m(&self, center: LatLng) -> f64 {
        match self {
            Geofence::Radius {
                center: fence_center,
                radius_m,
            } => distance_m(center, *fence_center) + radius_m,
            Geofence::Polygon(polygon) => polygon
                .exterior()
                .points()
                .map(|p| distance_m(center, lat_lng(p)))
                .fold(0.0, f64::max),
        }
    }
}

fn lat_lng(p: Point<f64>) -> LatLng {
    LatLng {
        latitude: p.y(),
        longitude: p.x(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(latitude: f64, longitude: f64) -> LatLng {
        LatLng {
            latitude,
            longitude,
        }
    }

    const TOKYO_STATION: LatLng = LatLng {
        latitude: 35.681236,
        longitude: 139.767125,
    };
    const SHIBUYA_STATION: LatLng = LatLng {
        latitude: 35.658034,
        longitude: 139.701636,
    };

    /// A square of about 180 m × 180 m around (35.0, 139.0), counter-clockwise.
    fn square() -> Vec<LatLng> {
        vec![
            ll(34.999, 138.999),
            ll(34.999, 139.001),
            ll(35.001, 139.001),
            ll(35.001, 138.999),
        ]
    }

    #[test]
    fn geodesic_distance_matches_geographiclib() {
        // Expected values from GeographicLib (Python `geographiclib` 2.x, WGS84 Inverse).
        let d = distance_m(TOKYO_STATION, SHIBUYA_STATION);
        assert!((d - 6_463.998).abs() < 0.01, "{d}");
        assert!((distance_m(ll(0.0, 0.0), ll(0.0, 1.0)) - 111_319.491).abs() < 0.01);
        assert!((distance_m(ll(35.0, 139.0), ll(35.001, 139.0)) - 110.941).abs() < 0.01);
        assert_eq!(distance_m(TOKYO_STATION, TOKYO_STATION), 0.0);
    }

    #[test]
    fn distance_is_symmetric() {
        let there = distance_m(TOKYO_STATION, SHIBUYA_STATION);
        let back = distance_m(SHIBUYA_STATION, TOKYO_STATION);
        assert!((there - back).abs() < 1e-6);
    }

    #[test]
    fn coordinates_out_of_range_or_not_finite_are_refused() {
        assert_eq!(check_coordinate(ll(90.0, -180.0)), Ok(()));
        assert_eq!(
            check_coordinate(ll(f64::NAN, 0.0)),
            Err(CoordinateError::Latitude)
        );
        assert_eq!(
            check_coordinate(ll(-90.5, 0.0)),
            Err(CoordinateError::Latitude)
        );
        assert_eq!(
            check_coordinate(ll(0.0, f64::INFINITY)),
            Err(CoordinateError::Longitude)
        );
        assert_eq!(
            check_coordinate(ll(0.0, 180.01)),
            Err(CoordinateError::Longitude)
        );
    }

    #[test]
    fn radius_fence_is_geodesic_and_boundary_inclusive() {
        // 35.001 is 110.941 m north of 35.0 (GeographicLib).
        let fence = Geofence::Radius {
            center: ll(35.0, 139.0),
            radius_m: 111.0,
        };
        assert!(fence.contains(ll(35.001, 139.0)));
        assert!(!fence.contains(ll(35.0011, 139.0)));
        let exact = Geofence::Radius {
            center: ll(35.0, 139.0),
            radius_m: distance_m(ll(35.0, 139.0), ll(35.001, 139.0)),
        };
        assert!(exact.contains(ll(35.001, 139.0)));
        // 139.001 is only 91.288 m east at this latitude.
        assert!(
            Geofence::Radius {
                center: ll(35.0, 139.0),
                radius_m: 92.0
            }
            .contains(ll(35.0, 139.001))
        );
    }

    #[test]
    fn polygon_fence_contains_inside_and_boundary_not_outside() {
        let fence = Geofence::polygon(&square()).expect("valid");
        assert!(fence.contains(ll(35.0, 139.0)));
        assert!(fence.contains(ll(35.001, 139.0)), "on an edge");
        assert!(fence.contains(ll(34.999, 138.999)), "on a vertex");
        assert!(!fence.contains(ll(35.0011, 139.0)));
        assert!(!fence.contains(ll(35.0, 139.002)));
    }

    #[test]
    fn concave_polygon_excludes_its_notch() {
        // An L shape: the square minus its north-east quarter.
        let fence = Geofence::polygon(&[
            ll(34.999, 138.999),
            ll(34.999, 139.001),
            ll(35.0, 139.001),
            ll(35.0, 139.0),
            ll(35.001, 139.0),
            ll(35.001, 138.999),
        ])
        .expect("valid");
        assert!(fence.contains(ll(34.9995, 139.0005)));
        assert!(!fence.contains(ll(35.0005, 139.0005)));
    }

    #[test]
    fn open_and_closed_rings_are_the_same_polygon() {
        let mut closed = square();
        closed.push(closed[0]);
        assert_eq!(check_polygon(&closed), Ok(square()));
        assert_eq!(check_polygon(&square()), Ok(square()));
        assert_eq!(Geofence::polygon(&closed), Geofence::polygon(&square()));
    }

    #[test]
    fn vertex_count_is_three_to_a_thousand_not_counting_the_closing_vertex() {
        let triangle = vec![ll(0.0, 0.0), ll(0.0, 0.001), ll(0.001, 0.0)];
        assert!(check_polygon(&triangle).is_ok());
        assert_eq!(
            check_polygon(&triangle[..2]),
            Err(PolygonError::VertexCount(2))
        );
        // Closed with only two distinct vertices.
        assert_eq!(
            check_polygon(&[triangle[0], triangle[1], triangle[0]]),
            Err(PolygonError::VertexCount(2))
        );
        assert_eq!(check_polygon(&[]), Err(PolygonError::VertexCount(0)));
        let mut big = circle(MAX_POLYGON_VERTICES);
        assert_eq!(check_polygon(&big).map(|r| r.len()), Ok(1_000));
        big.push(big[0]);
        assert_eq!(check_polygon(&big).map(|r| r.len()), Ok(1_000), "closed");
        let too_big = circle(MAX_POLYGON_VERTICES + 1);
        assert_eq!(
            check_polygon(&too_big),
            Err(PolygonError::VertexCount(1_001))
        );
    }

    /// A regular polygon of `n` vertices, radius 0.001°, around (35, 139).
    fn circle(n: usize) -> Vec<LatLng> {
        (0..n)
            .map(|i| {
                let angle = i as f64 * std::f64::consts::TAU / n as f64;
                ll(35.0 + 0.001 * angle.sin(), 139.0 + 0.001 * angle.cos())
            })
            .collect()
    }

    #[test]
    fn bad_vertex_coordinates_are_named() {
        let mut ring = square();
        ring[2] = ll(f64::NAN, 139.0);
        assert_eq!(
            check_polygon(&ring),
            Err(PolygonError::Coordinate {
                index: 2,
                error: CoordinateError::Latitude
            })
        );
        ring[2] = ll(35.0, -181.0);
        assert_eq!(
            check_polygon(&ring),
            Err(PolygonError::Coordinate {
                index: 2,
                error: CoordinateError::Longitude
            })
        );
    }

    #[test]
    fn repeated_vertex_is_refused() {
        let mut ring = square();
        ring.insert(2, ring[1]);
        assert_eq!(
            check_polygon(&ring),
            Err(PolygonError::RepeatedVertex { index: 2 })
        );
    }

    #[test]
    fn bow_tie_is_a_self_intersection() {
        let ring = [
            ll(34.999, 138.999),
            ll(35.001, 139.001),
            ll(34.999, 139.001),
            ll(35.001, 138.999),
        ];
        assert_eq!(
            check_polygon(&ring),
            Err(PolygonError::SelfIntersection {
                first: 0,
                second: 2
            })
        );
    }

    #[test]
    fn touching_a_non_adjacent_edge_is_a_self_intersection() {
        // Vertex 4 lies on edge 0 (the south edge).
        let ring = [
            ll(34.999, 138.999),
            ll(34.999, 139.001),
            ll(35.001, 139.001),
            ll(35.001, 139.0),
            ll(34.999, 139.0),
            ll(35.0, 138.999),
        ];
        assert!(matches!(
            check_polygon(&ring),
            Err(PolygonError::SelfIntersection { .. })
        ));
    }

    #[test]
    fn a_spike_folding_back_is_a_self_intersection() {
        // Vertex 2 goes back along edge 0-1 towards vertex 0.
        let ring = [ll(35.0, 139.0), ll(35.0, 139.002), ll(35.0, 139.001)];
        assert!(matches!(
            check_polygon(&ring),
            Err(PolygonError::SelfIntersection { .. })
        ));
        // Collinear but straight on is fine as long as the ring is otherwise simple.
        let straight = [
            ll(35.0, 139.0),
            ll(35.0, 139.001),
            ll(35.0, 139.002),
            ll(35.001, 139.001),
        ];
        assert!(check_polygon(&straight).is_ok());
    }

    #[test]
    fn an_edge_across_the_antimeridian_is_refused() {
        let ring = [ll(0.0, 179.999), ll(0.0, -179.999), ll(0.001, -179.999)];
        assert_eq!(
            check_polygon(&ring),
            Err(PolygonError::CrossesAntimeridian { index: 0 })
        );
    }

    #[test]
    fn bounding_radius_reaches_the_farthest_point_of_the_fence() {
        let center = ll(35.0, 139.0);
        let radius = Geofence::Radius {
            center,
            radius_m: 150.0,
        };
        assert_eq!(radius.bounding_radius_m(center), 150.0);
        let polygon = Geofence::polygon(&square()).expect("valid");
        // The southern corners are the farthest: a degree of longitude is longer there.
        let corner = distance_m(center, ll(34.999, 139.001));
        assert!(corner > distance_m(center, ll(35.001, 139.001)));
        assert_eq!(polygon.bounding_radius_m(center), corner);
        // A polygon away from the store location: the far corner counts.
        let off_center = ll(34.998, 138.998);
        let far = distance_m(off_center, ll(35.001, 139.001));
        assert_eq!(polygon.bounding_radius_m(off_center), far);
        for p in square() {
            assert!(polygon.contains(p) && distance_m(off_center, p) <= far);
        }
    }

    #[test]
    fn a_store_uses_its_polygon_when_it_has_one() {
        let mut store = Store {
            store_id: "s".into(),
            name: "S".into(),
            location: ll(35.0, 139.0),
            time_zone: "Asia/Tokyo".into(),
            geofence_radius_m: 10.0,
            geofence_polygon: Vec::new(),
        };
        let radius = Geofence::of_store(&store).expect("valid");
        assert!(!radius.contains(ll(35.0009, 139.0)));
        store.geofence_polygon = square();
        let polygon = Geofence::of_store(&store).expect("valid");
        assert!(polygon.contains(ll(35.0009, 139.0)));
    }
}
