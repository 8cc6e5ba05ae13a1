-- Members over their lifetime (issue #23). ListOrders pages a member's orders newest first
-- by (created_at, order_id): this index answers a page without sorting the member's orders.
create index orders_by_member_created on orders (member_id, created_at desc, order_id desc);

-- UpdateMember's attributes (JSON object of string → string, for segments).
alter table members add column attributes jsonb not null default '{}';

-- EraseMember: when the member's personal data was erased. SQLite cannot change the state
-- column's check without rebuilding members, so both backends keep state 'active' for an
-- erased member and readers take a set erased_at as MEMBER_STATE_ERASED.
alter table members add column erased_at timestamptz;
