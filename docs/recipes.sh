#!/usr/bin/env bash
# The README's curl recipes, in the README's order, against a fresh server in a new directory:
# `tests/api/recipes.rs` runs this file (and checks that every README block marked
# "<!-- recipe -->" is a part of it, word for word), so the README cannot drift from what works.
# Dates are relative to now: it passes at any hour.
#
#   OMO=/path/to/omo bash docs/recipes.sh      # omo on PATH by default
set -euo pipefail
OMO_BIN=${OMO:-omo}
omo() { "$OMO_BIN" "$@"; }
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
fail() { echo "FAILED: $*" >&2; exit 1; }
# Every recipe's call must succeed (HTTP 200); its reply is printed on a line of its own.
curl() { command curl --fail-with-body "$@"; echo; }
expect() { # expect TEXT PATTERN: the reply holds the pattern
    grep -q -- "$2" <<<"$1" || fail "expected $2 in: $1"
}

# A fresh server on a free port, over ./omo.db (the README's default is 127.0.0.1:50051).
"$OMO_BIN" serve --listen 127.0.0.1:0 --database-url sqlite://omo.db 2>server.log &
SERVER_PID=$!
for _ in $(seq 1 100); do
    grep -q "omo listening on" server.log 2>/dev/null && break
    sleep 0.1
done
ADDR=$(sed -n 's/^omo listening on //p' server.log)
[ -n "$ADDR" ] || fail "the server did not start: $(cat server.log)"

# --- README "Calling it"
ADMIN=$(omo keys create --role admin --name ops --database-url sqlite://omo.db | tail -1)
REG=$(omo keys create --role register --store shibuya --database-url sqlite://omo.db | tail -1)
EC=$(omo keys create --role checkout --name ec-backend --database-url sqlite://omo.db | tail -1)
APP=$(omo keys create --role app --name app-backend --database-url sqlite://omo.db | tail -1)
OMO_URL=http://$ADDR

# <!-- recipe: calling -->
# A store and a member with a store card and an EC account
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"store-shibuya","store":{"store_id":"shibuya","name":"Shibuya","location":{"latitude":35.6595,"longitude":139.7005},"geofence_radius_m":120}}' \
  $OMO_URL/omo.v1.StoreService/CreateStore
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"new-1","identifiers":[{"kind":"card","value":"4900-1234"},{"kind":"ec_customer","value":"c-77"}],"display_name":"Hanako"}' \
  $OMO_URL/omo.v1.MemberService/CreateMember

# The register sells ¥12,000 to the card holder: +120 points, available at once everywhere
curl -sS -H "authorization: Bearer $REG" -H 'content-type: application/json' \
  -d '{"request_id":"sale-0001","order_id":"shibuya-1-0001","member":{"identifier":{"kind":"card","value":"4900-1234"}},"channel":"CHANNEL_STORE","store_id":"shibuya","register_id":"1","receipt_no":"0001","basket":{"lines":[{"line_id":"1","sku":"TEE-M","category":"apparel","quantity":2,"amount":"12000"}]}}' \
  $OMO_URL/omo.v1.CheckoutService/RecordSale

# EC checkout spends 100 of them: Authorize holds, Capture spends
curl -sS -H "authorization: Bearer $EC" -H 'content-type: application/json' \
  -d '{"request_id":"auth-9001","order_id":"EC-9001","member":{"identifier":{"kind":"ec_customer","value":"c-77"}},"channel":"CHANNEL_EC","basket":{"lines":[{"line_id":"1","sku":"BAG","quantity":1,"amount":"5000"}]},"points_to_redeem":100}' \
  $OMO_URL/omo.v1.CheckoutService/Authorize
curl -sS -H "authorization: Bearer $EC" -H 'content-type: application/json' \
  -d '{"request_id":"cap-9001","order_id":"EC-9001"}' $OMO_URL/omo.v1.CheckoutService/Capture

# Balance (int64 numbers come back as JSON strings), history, and a partial refund
curl -sS -H "authorization: Bearer $EC" -H 'content-type: application/json' \
  -d '{"member":{"identifier":{"kind":"card","value":"4900-1234"}}}' $OMO_URL/omo.v1.LedgerService/GetBalance
curl -sS -H "authorization: Bearer $EC" -H 'content-type: application/json' \
  -d '{"member":{"identifier":{"kind":"card","value":"4900-1234"}},"page_size":10}' $OMO_URL/omo.v1.LedgerService/ListTransactions
curl -sS -H "authorization: Bearer $EC" -H 'content-type: application/json' \
  -d '{"request_id":"ref-9001","order_id":"EC-9001","amount":"2500"}' $OMO_URL/omo.v1.CheckoutService/Refund
# <!-- /recipe -->

# Checks of what the recipes above did (not in the README).
balance=$(curl -sS -H "authorization: Bearer $EC" -H 'content-type: application/json' \
  -d '{"member":{"identifier":{"kind":"card","value":"4900-1234"}}}' $OMO_URL/omo.v1.LedgerService/GetBalance)
expect "$balance" '"availablePoints":"'
refused=$(command curl -sS -w '\n%{http_code}' -H "authorization: Bearer $EC" -H 'content-type: application/json' \
  -d '{"request_id":"auth-9002","order_id":"EC-9002","member":{"identifier":{"kind":"ec_customer","value":"c-77"}},"channel":"CHANNEL_EC","basket":{"lines":[{"line_id":"1","sku":"BAG","quantity":1,"amount":"5000"}]},"points_to_redeem":99999}' \
  $OMO_URL/omo.v1.CheckoutService/Authorize)
expect "$refused" '"reason":"INSUFFICIENT_POINTS"'
expect "$(tail -1 <<<"$refused")" '^400$'
echo "ok - calling it"

# <!-- recipe: coupons -->
# Coupons: a campaign, a coupon in the member's wallet, and a price check with its code
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"campaign-store-500","campaign":{"campaign_id":"store-500","name":"¥500 off in store","amount_off":"500","min_spend":"3000","channels":["CHANNEL_STORE"],"validity_days":30}}' \
  $OMO_URL/omo.v1.CouponService/CreateCampaign
COUPON=$(curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"issue-1","campaign_id":"store-500","member":{"identifier":{"kind":"card","value":"4900-1234"}}}' \
  $OMO_URL/omo.v1.CouponService/IssueCoupon | sed -n 's/.*"code":"\([^"]*\)".*/\1/p')
curl -sS -H "authorization: Bearer $REG" -H 'content-type: application/json' \
  -d '{"member":{"identifier":{"kind":"card","value":"4900-1234"}},"channel":"CHANNEL_STORE","store_id":"shibuya","basket":{"lines":[{"line_id":"1","quantity":1,"amount":"4000"}]},"points_to_redeem":50,"coupon_codes":["'$COUPON'"]}' \
  $OMO_URL/omo.v1.CheckoutService/Quote
# <!-- /recipe -->
[ -n "$COUPON" ] || fail "IssueCoupon gave no code"
echo "ok - coupons"

# --- README "Rules"
# <!-- recipe: rules -->
# 3x points on coffee for a week, 10:00-20:00 at the stores' local time
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"rule-coffee","rule":{"rule_id":"coffee-3x","name":"3x coffee","trigger":"RULE_TRIGGER_PURCHASE","conditions":{"lines":[{"category":"coffee"}],"active_hours":[{"start":"10:00","end":"20:00"}]},"effects":{"points_multiplier":"3"},"ends_at":"'$(date -u -d '+7 days' +%FT%TZ)'"}}' \
  $OMO_URL/omo.v1.RuleService/CreateRule
# +500 points on a member's first purchase, at most 1,000,000 points in all (the budget)
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"rule-welcome","rule":{"rule_id":"welcome","trigger":"RULE_TRIGGER_PURCHASE","conditions":{"first_purchase":true},"effects":{"bonus_points":500},"limits":{"budget_points":1000000}}}' \
  $OMO_URL/omo.v1.RuleService/CreateRule
# Which rules would fire for this basket, and why the others would not (writes nothing)
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"trigger":"RULE_TRIGGER_PURCHASE","member":{"identifier":{"kind":"card","value":"4900-1234"}},"channel":"CHANNEL_STORE","store_id":"shibuya","basket":{"lines":[{"line_id":"1","category":"coffee","quantity":1,"amount":"2000"}]}}' \
  $OMO_URL/omo.v1.RuleService/SimulateRules
# Every rule, one rule's figures; switch one off (a FieldMask is a string in JSON)
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"include_disabled":true}' $OMO_URL/omo.v1.RuleService/ListRules
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"rule_id":"welcome"}' $OMO_URL/omo.v1.RuleService/GetRuleStats
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"coffee-off","rule":{"rule_id":"coffee-3x","enabled":false},"update_mask":"enabled"}' \
  $OMO_URL/omo.v1.RuleService/UpdateRule
# Limited-time points granted by hand: an expiry of their own (60 days from now), spent first
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"apology-1","member":{"identifier":{"kind":"card","value":"4900-1234"}},"points":300,"reason":"apology","expires_at":"'$(date -u -d '+60 days' +%FT%TZ)'"}' \
  $OMO_URL/omo.v1.LedgerService/AdjustPoints
# <!-- /recipe -->
rules=$(curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"rule_id":"coffee-3x"}' $OMO_URL/omo.v1.RuleService/GetRule)
expect "$rules" '"enabled":false'
echo "ok - rules"

# --- README "Events"
# <!-- recipe: events -->
# A behaviour event from the app (the EVENT rules of its type decide on it), the feed from its
# start, and a webhook for two types of events (the answer shows its signing secret, once)
curl -sS -H "authorization: Bearer $APP" -H 'content-type: application/json' \
  -d '{"request_id":"ev-1","member":{"identifier":{"kind":"card","value":"4900-1234"}},"event_type":"review_posted","attributes":{"product":"tea"}}' \
  $OMO_URL/omo.v1.EventService/TrackEvent
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"after_seq":0,"page_size":5}' $OMO_URL/omo.v1.EventService/ListEvents
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"wh-1","webhook":{"webhook_id":"crm","url":"http://crm.internal:8080/omo","types":["points.earned","coupon.issued"]}}' \
  $OMO_URL/omo.v1.EventService/CreateWebhook
# <!-- /recipe -->
echo "ok - events"

# --- README "Engagement"
# <!-- recipe: engagement -->
# A ¥300 walk-in coupon at Shibuya: on entry, 10:00-20:00 local time, once a day per member,
# at most 500 a day at the store
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"campaign-walk-in","campaign":{"campaign_id":"walk-in-300","name":"¥300 off when you walk in","amount_off":"300","channels":["CHANNEL_STORE"],"store_ids":["shibuya"],"validity_days":1}}' \
  $OMO_URL/omo.v1.CouponService/CreateCampaign
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"rule-walk-in","rule":{"rule_id":"shibuya-walk-in","campaign_id":"walk-in-300","store_ids":["shibuya"],"min_dwell_seconds":0,"active_hours":[{"start":"10:00","end":"20:00"}],"cooldown_seconds":86400,"daily_cap_per_store":500}}' \
  $OMO_URL/omo.v1.EngagementService/CreateGeoRule
# The app reports the member at the door: the verdict, the stores it is inside, the coupons
# issued, and why each geo rule that did not fire did not (ruleOutcomes: OUTSIDE_HOURS, ...)
curl -sS -H "authorization: Bearer $APP" -H 'content-type: application/json' \
  -d '{"request_id":"loc-0001","member":{"identifier":{"kind":"card","value":"4900-1234"}},"latitude":35.65955,"longitude":139.70045,"accuracy_m":15,"observed_at":"'$(date -u +%FT%TZ)'","device_id":"phone-1"}' \
  $OMO_URL/omo.v1.EngagementService/ReportLocation
# What the member could get around here, nearest store first
curl -sS -H "authorization: Bearer $APP" -H 'content-type: application/json' \
  -d '{"member":{"identifier":{"kind":"card","value":"4900-1234"}},"latitude":35.6600,"longitude":139.7000,"radius_m":2000,"page_size":10}' \
  $OMO_URL/omo.v1.EngagementService/ListNearbyOffers
# Every 5th visit within 30 days earns a coupon (a register sale or a 5-minute dwell is a visit)
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"rule-regular","rule":{"rule_id":"fifth-visit","campaign_id":"store-500","kind":"VISIT_RULE_KIND_NTH_VISIT","visits":5,"window_days":30}}' \
  $OMO_URL/omo.v1.EngagementService/CreateVisitRule
# <!-- /recipe -->
geo=$(curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"rule_id":"shibuya-walk-in"}' $OMO_URL/omo.v1.RuleService/GetRule)
expect "$geo" '"trigger":"RULE_TRIGGER_GEO"'
echo "ok - engagement"

# --- README "Receipts"
# <!-- recipe: receipts -->
# 1 point per ¥100 for receipts from any store; ¥30,000 and more wait for a person to look
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"rule-scan","rule":{"rule_id":"scan-1pct","earn_rate":"0.01","review_threshold":"30000","max_age_days":7}}' \
  $OMO_URL/omo.v1.EngagementService/CreateReceiptRule
# A receipt of ¥32,000 from the app: over the threshold, it waits for review
curl -sS -H "authorization: Bearer $APP" -H 'content-type: application/json' \
  -d '{"request_id":"rcpt-0001","member":{"identifier":{"kind":"card","value":"4900-1234"}},"receipt":{"store_id":"shibuya","register_id":"2","receipt_no":"0456","issued_at":"'$(date -u +%FT%TZ)'","total":"32000","lines":[{"line_id":"1","sku":"coat","category":"apparel","quantity":1,"amount":"32000"}],"image_sha256":"'$(printf photo-1 | sha256sum | cut -c1-64)'"}}' \
  $OMO_URL/omo.v1.EngagementService/SubmitReceipt
# The review queue (oldest first), and the first receipt in it approved
QUEUE=$(curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"status":"RECEIPT_STATUS_PENDING_REVIEW","page_size":50}' $OMO_URL/omo.v1.EngagementService/ListReceipts)
RECEIPT_ID=$(sed -n 's/^[^[]*\[{"receiptId":"\([^"]*\)".*/\1/p' <<<"$QUEUE")
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"review-'$RECEIPT_ID'","receipt_id":"'$RECEIPT_ID'","approve":true,"note":"matches the store journal"}' \
  $OMO_URL/omo.v1.EngagementService/ReviewReceipt
# <!-- /recipe -->
[ -n "$RECEIPT_ID" ] || fail "no receipt waits for review: $QUEUE"
reviewed=$(curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"review-'$RECEIPT_ID'","receipt_id":"'$RECEIPT_ID'","approve":true,"note":"matches the store journal"}' \
  $OMO_URL/omo.v1.EngagementService/ReviewReceipt)
expect "$reviewed" '"status":"RECEIPT_STATUS_ACCEPTED"'
echo "ok - receipts"

# --- README "Erasure"
# <!-- recipe: erasure -->
# A member who asked to be forgotten (one made for the purpose here): personal data deleted,
# points forfeited and coupons revoked through the ledger, the member_id kept as a pseudonym
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"new-taro","identifiers":[{"kind":"email","value":"taro@example.com"}],"display_name":"Taro"}' \
  $OMO_URL/omo.v1.MemberService/CreateMember
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"erase-taro","member":{"identifier":{"kind":"email","value":"taro@example.com"}}}' \
  $OMO_URL/omo.v1.MemberService/EraseMember
# <!-- /recipe -->
echo "ok - erasure"

# --- README "Tiers"
# <!-- recipe: tiers -->
# Silver from ¥10,000 of spend in 12 months (1.5x base points), gold from ¥50,000 (2x); then
# where the card holder stands (Member.tier: tier, spend, the next tier and what it takes)
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"request_id":"tiers-1","program":{"tiers":[{"tier_id":"silver","name":"Silver","min_spend":"10000","earn_multiplier":"1.5"},{"tier_id":"gold","name":"Gold","min_spend":"50000","earn_multiplier":"2"}],"tier_window_months":12},"update_mask":"tiers,tierWindowMonths"}' \
  $OMO_URL/omo.v1.ProgramService/UpdateProgram
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"member":{"identifier":{"kind":"card","value":"4900-1234"}}}' \
  $OMO_URL/omo.v1.MemberService/GetMember
# <!-- /recipe -->
member=$(curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"member":{"identifier":{"kind":"card","value":"4900-1234"}}}' \
  $OMO_URL/omo.v1.MemberService/GetMember)
expect "$member" '"tier":{'
echo "ok - tiers"

# --- README "Reports"
# <!-- recipe: reports -->
# What the points outstanding are worth, and one campaign's funnel
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{}' $OMO_URL/omo.v1.ReportService/GetLiability
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"campaign_id":"store-500"}' $OMO_URL/omo.v1.ReportService/GetCampaignStats
# Points earned and redeemed per day over the last 30 days, per channel and store
curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"start_time":"'$(date -u -d '30 days ago' +%FT%TZ)'","end_time":"'$(date -u -d 'tomorrow' +%FT%TZ)'","group_by_day":true}' \
  $OMO_URL/omo.v1.ReportService/GetActivity
# <!-- /recipe -->
activity=$(curl -sS -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"start_time":"'$(date -u -d '30 days ago' +%FT%TZ)'","end_time":"'$(date -u -d 'tomorrow' +%FT%TZ)'","group_by_day":true}' \
  $OMO_URL/omo.v1.ReportService/GetActivity)
expect "$activity" '"pointsEarned":"'
echo "ok - reports"

# --- README "Backup"
# <!-- recipe: backup -->
mkdir -p backups
omo backup --to backups/omo-$(date +%F).db --database-url sqlite://omo.db
omo verify --database-url sqlite://backups/omo-$(date +%F).db
# A file that is not there is refused (exit 1), and not created
omo verify --database-url sqlite://backups/omo-1999-01-01.db || echo "refused, as it should be"
# <!-- /recipe -->
[ ! -e backups/omo-1999-01-01.db ] || fail "verify created a database"
if omo verify --database-url sqlite://backups/omo-1999-01-01.db 2>/dev/null; then
    fail "verify passed a missing database"
fi
omo verify --database-url sqlite://backups/omo-$(date +%F).db | grep -q "all invariants hold" \
    || fail "the backup does not verify"
echo "ok - backup"
echo "all recipes ran"
