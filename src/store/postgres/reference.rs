//! Reference data: the program settings and the retail stores.

use sqlx::postgres::PgRow;

use super::{Cols, PgUnitOfWork};
use crate::domain::{
    model::{self, LatLng, Program},
    ports::StoreResult,
};
use crate::store::to_json;

/// The columns of a store, for the store queries below.
macro_rules! select_stores {
    () => {
        r#"
select store_id, name, latitude, longitude, time_zone, geofence_radius_m,
    geofence_polygon::text as geofence_polygon
from stores"#
    };
}

const GET_STORE: &str = concat!(select_stores!(), "\nwhere store_id = $1");

const LIST_STORES: &str = concat!(select_stores!(), "\norder by store_id");

pub(super) async fn load_program(
    uow: &mut PgUnitOfWork,
    lock: bool,
) -> StoreResult<Option<Program>> {
    let sql = if lock {
        "select id, body::text as body from program where id = 1 for no key update"
    } else {
        "select id, body::text as body from program where id = 1"
    };
    let query = sqlx::query(sql);
    uow.fetch_optional(query, |row| Cols::new(row, "program", "id").json("body"))
        .await
}

pub(super) async fn get_store(
    uow: &mut PgUnitOfWork,
    store_id: &str,
) -> StoreResult<Option<model::Store>> {
    let query = sqlx::query(GET_STORE).bind(store_id); // $1
    uow.fetch_optional(query, store_from_row).await
}

pub(super) async fn list_stores(uow: &mut PgUnitOfWork) -> StoreResult<Vec<model::Store>> {
    uow.fetch_all(sqlx::query(LIST_STORES), store_from_row)
        .await
}

pub(super) async fn ensure_program(uow: &mut PgUnitOfWork, program: &Program) -> StoreResult<()> {
    let query = sqlx::query(
        r#"
insert into program (id, body)
values (1, $1::jsonb)
on conflict (id) do nothing"#,
    )
    .bind(to_json(program)?); // $1
    uow.run(query).await
}

impl PgUnitOfWork {
    pub(super) async fn save_program(&mut self, program: &Program) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
insert into program (id, body)
values (1, $1::jsonb)
on conflict (id) do update
set body = excluded.body"#,
        )
        .bind(to_json(program)?); // $1
        self.run(query).await
    }

    pub(super) async fn insert_store(&mut self, store: &model::Store) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
insert into stores (store_id, name, latitude, longitude, time_zone, geofence_radius_m,
    geofence_polygon)
values ($1, $2, $3, $4, $5, $6, $7::jsonb)"#,
        )
        .bind(&store.store_id) // $1
        .bind(&store.name) // $2
        .bind(store.location.latitude) // $3
        .bind(store.location.longitude) // $4
        .bind(&store.time_zone) // $5
        .bind(store.geofence_radius_m) // $6
        .bind(to_json(&store.geofence_polygon)?); // $7
        self.run(query).await
    }
}

fn store_from_row(row: &PgRow) -> StoreResult<model::Store> {
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
