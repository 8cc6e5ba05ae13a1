-- Members over their lifetime (issue #23). ListOrders pages a member's orders newest first
-- by (created_at, order_id): this index answers a page without sorting the member's orders.
create index orders_by_member_created on orders (member_id, created_at desc, order_id desc);

-- UpdateMember's attributes (JSON object of string → string, for segments).
alter table members add column attributes text not null default '{}';

-- EraseMember: when the member's personal data was erased. The state column's check predates
-- erasure and SQLite cannot change a check without rebuilding members (which identifiers,
-- presence and merges reference), so an erased member keeps state 'active' here and readers
-- take a set erased_at as MEMBER_STATE_ERASED (PostgreSQL stores it the same way).
alter table members add column erased_at integer;
