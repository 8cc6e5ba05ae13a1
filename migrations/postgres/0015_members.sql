-- Members over their lifetime (issue #23). ListOrders pages a member's orders newest first
-- by (created_at, order_id): this index answers a page without sorting the member's orders.
create index orders_by_member_created on orders (member_id, created_at desc, order_id desc);
