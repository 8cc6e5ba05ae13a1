-- Index entries no hot query reads: every order wrote one of each.
-- transactions_by_order served only omo verify's "a hold resolves at most once" check, which
-- groups the whole journal anyway.
drop index transactions_by_order;
-- orders_by_member served only the merge's "has the member an open order?": only authorized
-- orders need to be found by member, and most orders are captured sales.
drop index orders_by_member;
create index orders_open_by_member on orders (member_id) where state = 'authorized';
