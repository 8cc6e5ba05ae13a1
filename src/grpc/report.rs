//! `omo.v1.ReportService`: the operator's reports (admin only): the points liability, a
//! campaign's statistics and activity per channel, store and day.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tonic::{Request, Response, Status};

use super::{
    auth::caller_for,
    convert::{
        Violations, check_optional_id, decimal_out, instant, optional_channel_out,
        optional_instant, required_id,
    },
};
use crate::{
    domain::{
        auth::Operation,
        report::{ActivityRow, CampaignStats, Liability},
    },
    engine::Engine,
    proto::{self, report_service_server::ReportService},
};

/// Longest GetActivity range, in days (API: at most 366 days): a year of days, also a leap one.
const MAX_ACTIVITY_DAYS: i64 = 366;

pub struct ReportApi {
    engine: Arc<Engine>,
}

impl ReportApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn get_liability(
        &self,
        request: Request<proto::GetLiabilityRequest>,
    ) -> Result<Response<proto::GetLiabilityResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ReadReports).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let as_of = optional_instant(&mut v, "as_of", request.as_of.as_ref());
        let as_of = v.build(|| as_of)?;
        let liability = self.engine.get_liability(&caller, as_of).await?;
        Ok(Response::new(liability_out(liability)))
    }

    async fn get_campaign_stats(
        &self,
        request: Request<proto::GetCampaignStatsRequest>,
    ) -> Result<Response<proto::GetCampaignStatsResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ReadReports).await?;
        let campaign_id = request.into_inner().campaign_id;
        required_id("campaign_id", &campaign_id)?;
        let stats = self
            .engine
            .get_campaign_stats(&caller, &campaign_id)
            .await?;
        Ok(Response::new(campaign_stats_out(stats)))
    }

    async fn get_activity(
        &self,
        request: Request<proto::GetActivityRequest>,
    ) -> Result<Response<proto::GetActivityResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ReadReports).await?;
        let request = request.into_inner();
        let (range, store_id) = activity_request(&request)?;
        let rows = self
            .engine
            .get_activity(&caller, range, store_id, request.group_by_day)
            .await?;
        Ok(Response::new(proto::GetActivityResponse {
            rows: rows.into_iter().map(activity_row_out).collect(),
        }))
    }
}

/// [start_time, end_time) (both set, end after start, at most [`MAX_ACTIVITY_DAYS`] apart) and
/// the store asked for, if any.
fn activity_request(
    request: &proto::GetActivityRequest,
) -> Result<(ActivityRange, Option<&str>), Status> {
    let mut v = Violations::new();
    let mut required = |field: &str, timestamp: Option<&prost_types::Timestamp>| match timestamp {
        Some(timestamp) => instant(&mut v, field, timestamp),
        None => {
            v.push(field, "is required");
            None
        }
    };
    let start = required("start_time", request.start_time.as_ref());
    let end = required("end_time", request.end_time.as_ref());
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            v.push("end_time", "must be after start_time");
        } else if end - start > TimeDelta::days(MAX_ACTIVITY_DAYS) {
            v.push(
                "end_time",
                format!("must be at most {MAX_ACTIVITY_DAYS} days after start_time"),
            );
        }
    }
    let store_id = request.store_id.as_str();
    check_optional_id(&mut v, "store_id", store_id);
    v.build(|| Some(((start?, end?), Some(store_id).filter(|id| !id.is_empty()))))
}

type ActivityRange = (DateTime<Utc>, DateTime<Utc>);

fn liability_out(liability: Liability) -> proto::GetLiabilityResponse {
    proto::GetLiabilityResponse {
        outstanding_points: liability.outstanding_points,
        outstanding_value: decimal_out(liability.outstanding_value),
        pending_points: liability.pending_points,
        held_points: liability.held_points,
        by_expiry_month: liability
            .by_expiry_month
            .into_iter()
            .map(|bucket| proto::ExpiryBucket {
                month: bucket.month.to_string(),
                points: bucket.points,
            })
            .collect(),
    }
}

fn campaign_stats_out(stats: CampaignStats) -> proto::GetCampaignStatsResponse {
    let compared = stats.first_two_compared();
    let redemption_rate = stats.redemption_rate();
    proto::GetCampaignStatsResponse {
        issued: stats.issued,
        redeemed: stats.redeemed,
        expired: stats.expired,
        active: stats.active,
        redemption_rate,
        issued_by_source: stats.issued_by_source.into_iter().collect(),
        redeemed_by_channel: stats
            .redeemed_by_channel
            .into_iter()
            .map(|(channel, count)| (channel.as_str().to_string(), count))
            .collect(),
        total_discount: decimal_out(stats.total_discount),
        variants: stats
            .variants
            .iter()
            .map(|variant| proto::VariantStats {
                variant_id: variant.variant_id.clone(),
                issued: variant.issued,
                redeemed: variant.redeemed,
                redemption_rate: variant.redemption_rate(),
                discount_per_redemption: decimal_out(variant.discount_per_redemption()),
            })
            .collect(),
        p_value: compared.map(|test| test.p_value),
        p_value_ci95: compared.map(|test| proto::ConfidenceInterval {
            low: test.ci95_low,
            high: test.ci95_high,
        }),
        // Seconds as a float: a median of an even count can fall between two microseconds.
        median_seconds_to_redemption: stats
            .median_to_redemption
            .and_then(|median| median.num_microseconds())
            .map(|micros| micros as f64 / 1e6),
    }
}

fn activity_row_out(row: ActivityRow) -> proto::ActivityRow {
    proto::ActivityRow {
        channel: optional_channel_out(row.key.channel),
        store_id: row.key.store_id,
        day: row.key.day.map(|day| day.to_string()).unwrap_or_default(),
        points_earned: row.points_earned,
        points_redeemed: row.points_redeemed,
        points_expired: row.points_expired,
        orders: row.orders,
        sales: decimal_out(row.sales),
        visits: row.visits,
        receipts: row.receipts,
    }
}
