//! Reference data: the program settings and the retail stores.

use chrono::Utc;
use rusqlite::Row;

use super::{Cols, SqliteUnitOfWork};
use crate::domain::{
    model::{self, LatLng, Program},
    ports::StoreResult,
};
use crate::store::to_json;

// Column lists that several queries of a table share.

/// The columns of a store, for the queries below.
macro_rules! select_stores {
    () => {
        r"
            select store_id, name, latitude, longitude, time_zone,
                   geofence_radius_m, geofence_polygon
            from stores"
    };
}

/// `BEGIN IMMEDIATE` already serialises writers: no row lock needed.
pub(super) fn load_program(uow: &SqliteUnitOfWork, _lock: bool) -> StoreResult<Option<Program>> {
    let query = uow.query(
        r"
        select id, body
        from program
        where id = 1
        ",
    )?;
    uow.fetch_optional(query, |row| Cols::new(row, "program", "id").json("body"))
}

pub(super) fn get_store(
    uow: &SqliteUnitOfWork,
    store_id: &str,
) -> StoreResult<Option<model::Store>> {
    let query = uow
        .query(concat!(
            select_stores!(),
            r"
            where store_id = ?1
            "
        ))?
        .bind(store_id); // ?1
    uow.fetch_optional(query, store_from_row)
}

pub(super) fn list_stores(uow: &SqliteUnitOfWork) -> StoreResult<Vec<model::Store>> {
    let query = uow.query(concat!(
        select_stores!(),
        r"
        order by store_id
        "
    ))?;
    uow.fetch_all(query, store_from_row)
}

pub(super) fn ensure_program(uow: &SqliteUnitOfWork, program: &Program) -> StoreResult<()> {
    let query = uow
        .query(
            r"
            insert into program (id, body)
            values (1, ?1)
            on conflict (id) do nothing
            ",
        )?
        .bind(to_json(program)?); // ?1
    uow.run(query)
}

impl SqliteUnitOfWork {
    pub(super) fn save_program(&self, program: &Program) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into program (id, body)
                values (1, ?1)
                on conflict (id) do update
                set body = excluded.body
                ",
            )?
            .bind(to_json(program)?); // ?1
        self.run(query)
    }

    pub(super) fn insert_store(&self, store: &model::Store) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into stores (
                    store_id, name, latitude, longitude, time_zone,
                    geofence_radius_m, geofence_polygon, created_at
                )
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                ",
            )?
            .bind(&store.store_id) // ?1
            .bind(&store.name) // ?2
            .bind(store.location.latitude) // ?3
            .bind(store.location.longitude) // ?4
            .bind(&store.time_zone) // ?5
            .bind(store.geofence_radius_m) // ?6
            .bind(to_json(&store.geofence_polygon)?) // ?7
            .bind(Utc::now().timestamp_micros()); // ?8: bookkeeping only; the port passes no instant
        self.run(query)
    }
}

fn store_from_row(row: &Row<'_>) -> StoreResult<model::Store> {
    let c = Cols::new(row, "stores", "store_id");
    Ok(model::Store {
        store_id: c.get("store_id")?,
        name: c.get("name")?,
        location: LatLng {
            latitude: c.get("latitude")?,
            longitude: c.get("longitude")?,
        },
        time_zone: c.get("time_zone")?,
        geofence_radius_m: c.get("geofence_radius_m")?,
        geofence_polygon: c.json("geofence_polygon")?,
    })
}
