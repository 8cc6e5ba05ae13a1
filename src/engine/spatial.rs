//! An in-memory spatial index of stores: which stores' geofences may contain a position, and
//! which stores lie within a radius of it, without scanning every store.
//!
//! Each store is an axis-aligned box in (longitude, latitude) degrees around its location, wide
//! enough for its fence's bounding radius, in an R-tree. A query takes the boxes that intersect
//! the query's own box and then checks those few exactly (geodesic distance). The degree boxes
//! are built from a lower bound on the metres per degree and padded by a margin, so they always
//! cover the circle they stand for: the R-tree may return a few too many, never too few.

use rstar::{
    AABB, RTree,
    primitives::{GeomWithData, Rectangle},
};

use crate::domain::{
    geo::{Geofence, PolygonError, distance_m},
    model::{LatLng, Store},
};

/// Fewest metres in a degree of latitude anywhere on WGS84 (110,574 m at the equator), rounded
/// down.
const MIN_METRES_PER_DEGREE_LATITUDE: f64 = 110_000.0;
/// Fewest metres in a degree of longitude at the equator (111,319 m on WGS84), rounded down; a
/// parallel at latitude φ has at least this × cos φ.
const MIN_METRES_PER_DEGREE_LONGITUDE: f64 = 111_000.0;
/// Radii are padded by this factor and this many metres before they become degrees, for the
/// planar approximation of polygons and the rounding of the bounds above.
const MARGIN_FACTOR: f64 = 1.05;
const MARGIN_M: f64 = 10.0;

/// A store as the index sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSite {
    pub store_id: String,
    pub location: LatLng,
    /// The farthest any point of the store's fence is from its location
    /// (`Geofence::bounding_radius_m`).
    pub bounding_radius_m: f64,
}

impl StoreSite {
    /// A store's entry: the bounding radius of its fence (polygon or radius) around its
    /// location.
    pub fn of_store(store: &Store) -> Result<Self, PolygonError> {
        let fence = Geofence::of_store(store)?;
        Ok(Self {
            store_id: store.store_id.clone(),
            location: store.location,
            bounding_radius_m: fence.bounding_radius_m(store.location),
        })
    }
}

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// The stores, bulk-loaded into an R-tree. Rebuilt (cheaply) when stores change.
pub struct SpatialIndex {
    sites: Vec<StoreSite>,
    tree: RTree<Entry>,
}

impl SpatialIndex {
    pub fn new(sites: Vec<StoreSite>) -> Self {
        let entries = sites
            .iter()
            .enumerate()
            .flat_map(|(index, site)| {
                boxes(site.location, site.bounding_radius_m)
                    .into_iter()
                    .map(move |envelope| {
                        let rectangle = Rectangle::from_corners(envelope.lower(), envelope.upper());
                        GeomWithData::new(rectangle, index)
                    })
            })
            .collect();
        Self {
            sites,
            tree: RTree::bulk_load(entries),
        }
    }

    pub fn len(&self) -> usize {
        self.sites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// The stores whose fence may contain `position` (its bounding circle does); the caller
    /// tests each fence exactly. Sorted by store id, each once.
    pub fn candidates(&self, position: LatLng) -> Vec<&str> {
        let mut found: Vec<usize> = self
            .tree
            .locate_all_at_point(&[position.longitude, position.latitude])
            .map(|entry| entry.data)
            .filter(|&index| {
                let site = &self.sites[index];
                distance_m(site.location, position) <= site.bounding_radius_m
            })
            .collect();
        self.ids(&mut found)
    }

    /// The stores whose location is within `radius_m` (geodesic) of `position`, nearest first,
    /// with their distance in metres.
    pub fn within(&self, position: LatLng, radius_m: f64) -> Vec<(&str, f64)> {
        self.within_counted(position, radius_m).0
    }

    /// [`within`](Self::within), and how many stores were checked exactly.
    fn within_counted(&self, position: LatLng, radius_m: f64) -> (Vec<(&str, f64)>, usize) {
        let mut indexes: Vec<usize> = boxes(position, radius_m)
            .into_iter()
            .flat_map(|envelope| self.tree.locate_in_envelope_intersecting(&envelope))
            .map(|entry| entry.data)
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        let checked = indexes.len();
        let mut near: Vec<(&str, f64)> = indexes
            .into_iter()
            .map(|index| &self.sites[index])
            .map(|site| (site.store_id.as_str(), distance_m(site.location, position)))
            .filter(|&(_, distance)| distance <= radius_m)
            .collect();
        near.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        (near, checked)
    }

    fn ids(&self, indexes: &mut Vec<usize>) -> Vec<&str> {
        indexes.sort_unstable();
        indexes.dedup();
        let mut ids: Vec<&str> = indexes
            .iter()
            .map(|&index| self.sites[index].store_id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// Degree boxes that together cover every point within `radius_m` of `center`: one box, or two
/// when the circle crosses the antimeridian (each side gets its own), or a full band of
/// longitude near a pole, where degrees of longitude shrink to nothing.
fn boxes(center: LatLng, radius_m: f64) -> Vec<AABB<[f64; 2]>> {
    let padded_m = radius_m.max(0.0) * MARGIN_FACTOR + MARGIN_M;
    let half_height = padded_m / MIN_METRES_PER_DEGREE_LATITUDE;
    let south = (center.latitude - half_height).max(-90.0);
    let north = (center.latitude + half_height).min(90.0);
    // The widest degrees of longitude of the band are at its latitude nearest a pole.
    let cos_edge = south.abs().max(north.abs()).to_radians().cos();
    let half_width = padded_m / (MIN_METRES_PER_DEGREE_LONGITUDE * cos_edge);
    let band = |west: f64, east: f64| AABB::from_corners([west, south], [east, north]);
    if !half_width.is_finite() || half_width >= 180.0 {
        return vec![band(-180.0, 180.0)];
    }
    let (west, east) = (center.longitude - half_width, center.longitude + half_width);
    if west < -180.0 {
        vec![band(-180.0, east), band(west + 360.0, 180.0)]
    } else if east > 180.0 {
        vec![band(west, 180.0), band(-180.0, east - 360.0)]
    } else {
        vec![band(west, east)]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Whether a box of [`boxes`] holds `point`.
    fn covered(center: LatLng, radius_m: f64, point: LatLng) -> bool {
        use rstar::Envelope;
        boxes(center, radius_m)
            .iter()
            .any(|b| b.contains_point(&[point.longitude, point.latitude]))
    }

    fn ll(latitude: f64, longitude: f64) -> LatLng {
        LatLng {
            latitude,
            longitude,
        }
    }

    fn site(store_id: &str, location: LatLng, bounding_radius_m: f64) -> StoreSite {
        StoreSite {
            store_id: store_id.into(),
            location,
            bounding_radius_m,
        }
    }

    /// 100,000 stores on a 0.01° grid (about 1.1 km north-south and 0.9 km east-west) over
    /// Japan from (33.0, 135.0), each with a 100 m fence; ids "r<row>c<column>".
    fn grid() -> SpatialIndex {
        let sites = (0..100_000)
            .map(|i| {
                let (row, column) = (i / 400, i % 400);
                let location = ll(33.0 + row as f64 * 0.01, 135.0 + column as f64 * 0.01);
                site(&format!("r{row}c{column}"), location, 100.0)
            })
            .collect();
        SpatialIndex::new(sites)
    }

    #[test]
    fn queries_on_100_000_stores_check_only_the_neighbourhood() {
        let index = grid();
        assert_eq!(index.len(), 100_000);
        // 50 m north of the store at row 100, column 200 (34.0, 137.0).
        let position = ll(34.00045, 137.0);
        assert_eq!(index.candidates(position), ["r100c200"]);
        assert!(index.candidates(ll(34.005, 137.005)).is_empty());

        // Within 1,500 m: the store itself, its 4 edge neighbours (~1,109 m north-south,
        // ~923 m east-west) and its 4 diagonal ones (~1,450 m) — 9 of 100,000.
        let (near, checked) = index.within_counted(ll(34.0, 137.0), 1_500.0);
        assert!(checked <= 25, "checked {checked} stores exactly");
        let ids: Vec<&str> = near.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids.len(), 9, "{near:?}");
        assert_eq!(ids[0], "r100c200");
        assert_eq!(near[0].1, 0.0);
        assert_eq!(&ids[1..3], ["r100c199", "r100c201"]);
        assert!(near.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        assert!(near.iter().all(|&(_, d)| d <= 1_500.0));
    }

    #[test]
    fn within_finds_exactly_what_a_full_scan_finds() {
        let sites: Vec<StoreSite> = (0..2_000)
            .map(|i| {
                // A scatter from a fixed linear congruential sequence.
                let x = (i as u64).wrapping_mul(6_364_136_223_846_793_005) >> 11;
                let lat = 35.0 + (x % 100_000) as f64 / 100_000.0 * 0.2;
                let lon = 139.0 + (x / 100_000 % 100_000) as f64 / 100_000.0 * 0.2;
                site(&format!("s{i}"), ll(lat, lon), 50.0)
            })
            .collect();
        let index = SpatialIndex::new(sites.clone());
        let position = ll(35.1, 139.1);
        for radius_m in [100.0, 1_000.0, 5_000.0] {
            let mut expected: Vec<&str> = sites
                .iter()
                .filter(|s| distance_m(s.location, position) <= radius_m)
                .map(|s| s.store_id.as_str())
                .collect();
            let mut found: Vec<&str> = index
                .within(position, radius_m)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            expected.sort_unstable();
            found.sort_unstable();
            assert_eq!(found, expected, "radius {radius_m}");
        }
    }

    #[test]
    fn candidates_include_large_and_off_centre_polygon_fences() {
        // A store whose polygon lies 300-500 m east of its location.
        let location = ll(35.0, 139.0);
        let fence = Geofence::polygon(&[
            ll(34.999, 139.0033),
            ll(34.999, 139.0055),
            ll(35.001, 139.0055),
            ll(35.001, 139.0033),
        ])
        .expect("valid");
        let index = SpatialIndex::new(vec![site("s", location, fence.bounding_radius_m(location))]);
        let inside = ll(35.0009, 139.0054);
        assert!(fence.contains(inside));
        assert_eq!(index.candidates(inside), ["s"]);
        assert!(index.candidates(ll(35.0, 139.008)).is_empty());
    }

    #[test]
    fn boxes_cover_their_circle_near_the_poles_and_the_antimeridian() {
        for center in [
            ll(0.0, 0.0),
            ll(35.0, 139.0),
            ll(-60.0, 20.0),
            ll(89.9, 10.0),
        ] {
            for bearing in 0..16 {
                let angle = bearing as f64 * std::f64::consts::TAU / 16.0;
                // A point about 1 km away (checked geodesically below).
                let dlat = 1_000.0 / 110_574.0 * angle.sin();
                let dlon = 1_000.0 / (111_319.0 * center.latitude.to_radians().cos()) * angle.cos();
                let point = ll((center.latitude + dlat).min(90.0), center.longitude + dlon);
                let distance = distance_m(center, point);
                assert!(covered(center, distance, point), "{center:?} {point:?}");
            }
        }
        let east = ll(0.0, 179.9995);
        let across = ll(0.0, -179.9995); // 111 m east, across the antimeridian
        assert_eq!(boxes(east, 200.0).len(), 2);
        assert!(covered(east, 200.0, across));
        let index = SpatialIndex::new(vec![site("fiji", across, 150.0)]);
        assert_eq!(index.candidates(east), ["fiji"]);
        let near = index.within(east, 200.0);
        assert_eq!(near.len(), 1);
        assert!((near[0].1 - 111.3).abs() < 0.1, "{near:?}");
    }

    #[test]
    fn a_store_site_bounds_its_polygon() {
        let store = Store {
            store_id: "s".into(),
            name: "S".into(),
            location: ll(35.0, 139.0),
            time_zone: "Asia/Tokyo".into(),
            geofence_radius_m: 50.0,
            geofence_polygon: vec![ll(35.0, 139.0), ll(35.0, 139.002), ll(35.001, 139.001)],
        };
        let site = StoreSite::of_store(&store).expect("valid");
        // The farthest vertex is 0.002° of longitude east: 182.6 m at 35°N.
        assert!((site.bounding_radius_m - 182.58).abs() < 0.05, "{site:?}");
        let mut radius_only = store.clone();
        radius_only.geofence_polygon.clear();
        assert_eq!(
            StoreSite::of_store(&radius_only).map(|s| s.bounding_radius_m),
            Ok(50.0)
        );
    }

    fn scattered_site() -> impl Strategy<Value = (f64, f64, f64)> {
        // Around Tokyo, and across the antimeridian near Fiji.
        let lon = prop_oneof![139.6f64..139.9, -180.0f64..-179.9, 179.9f64..=180.0];
        let lat = prop_oneof![35.5f64..35.8, -17.0f64..-16.8];
        (lat, lon, 0.0f64..3_000.0)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn the_index_answers_what_a_full_scan_answers(
            stores in prop::collection::vec(scattered_site(), 0..150),
            query in scattered_site(),
        ) {
            let sites: Vec<StoreSite> = stores.iter().enumerate()
                .map(|(i, &(lat, lon, r))| site(&format!("s{i}"), ll(lat, lon), r))
                .collect();
            let index = SpatialIndex::new(sites.clone());
            let (lat, lon, radius_m) = query;
            let position = ll(lat, lon);

            let mut expected: Vec<&str> = sites.iter()
                .filter(|s| distance_m(s.location, position) <= s.bounding_radius_m)
                .map(|s| s.store_id.as_str())
                .collect();
            expected.sort_unstable();
            prop_assert_eq!(index.candidates(position), expected);

            let mut expected: Vec<(&str, f64)> = sites.iter()
                .map(|s| (s.store_id.as_str(), distance_m(s.location, position)))
                .filter(|&(_, d)| d <= radius_m)
                .collect();
            expected.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
            prop_assert_eq!(index.within(position, radius_m), expected);
        }
    }
}
