#!/usr/bin/env bash
# The floors #24 compares omo with, measured without omo's code: PostgreSQL's own load tool
# on one durable single-row insert per transaction, and SQLite's one durable insert per
# transaction in a loop. Run alone on a quiet machine; prints one line per floor.
#   scripts/floors.sh [seconds]   (PostgreSQL at 127.0.0.1:5432 as postgres, database omo_floor)
# With PGLEDGER_DIR set to a checkout of github.com/pgr0ss/pgledger it also measures pgledger
# (a pure-SQL ledger): random transfers between 100,000 accounts, 64 clients.
set -euo pipefail
seconds=${1:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists omo_floor' \
  -c 'create database omo_floor'
psql -q -h 127.0.0.1 -U postgres -d omo_floor \
  -c 'create table t (id bigserial primary key, k text not null, v bigint not null)'
cat >"$work/insert.sql" <<'SQL'
\set v random(1, 1000000000)
insert into t (k, v) values (md5(:v::text), :v);
SQL
pg=$(pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 64 -j 2 -T "$seconds" -f "$work/insert.sql" omo_floor \
  | awk '/^tps/ {print $3}')
psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database omo_floor'
echo "postgres-insert-floor ${pg} tx/s (pgbench -n -M prepared -c 64 -j 2, one insert per transaction)"

if [ -n "${PGLEDGER_DIR:-}" ]; then
  psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists omo_pgledger' \
    -c 'create database omo_pgledger'
  psql -q -h 127.0.0.1 -U postgres -d omo_pgledger --single-transaction \
    -f "$PGLEDGER_DIR/vendor/scoville-pgsql-ulid/ulid-to-uuid.sql" \
    -f "$PGLEDGER_DIR/vendor/scoville-pgsql-ulid/uuid-to-ulid.sql" \
    -f "$PGLEDGER_DIR/pgledger.sql" >/dev/null
  psql -q -h 127.0.0.1 -U postgres -d omo_pgledger -c "
    create table accounts_by_n (n int primary key, id text not null);
    insert into accounts_by_n
    select i, (select id from pgledger_create_account('a' || i, 'PTS'))
    from generate_series(1, 100000) i;"
  cat >"$work/transfer.sql" <<'SQL'
\set a random(1, 100000)
\set b 1 + (:a + random(0, 99998)) % 100000
select pgledger_create_transfer((select id from accounts_by_n where n = :a),
                                (select id from accounts_by_n where n = :b), 1);
SQL
  ledger=$(pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 64 -j 2 -T "$seconds" -f "$work/transfer.sql" omo_pgledger \
    | awk '/^tps/ {print $3}')
  psql -q -h 127.0.0.1 -U postgres -d postgres -c 'drop database omo_pgledger'
  echo "pgledger-transfers ${ledger} tx/s (pgbench -c 64 -j 2, random transfers among 100,000 accounts)"
fi

python3 - "$work/floor.db" "$seconds" <<'PY'
import sqlite3, sys, time, random
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("pragma journal_mode=wal")
db.execute("pragma synchronous=full")
db.execute("create table t (id integer primary key, k text not null, v integer not null)")
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    v = random.randrange(1, 10**9)
    db.execute("begin immediate")
    db.execute("insert into t (k, v) values (?, ?)", (format(v, "x"), v))
    db.execute("commit")
    n += 1
print(f"sqlite-insert-floor {n / float(sys.argv[2]):.0f} tx/s (WAL, synchronous=full, begin immediate; insert; commit)")
PY
