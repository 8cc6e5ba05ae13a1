//! A small authenticated gRPC client over the generated stubs: used by `omo demo`, the
//! benchmark and the black-box tests, and a model for Rust callers.

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::proto::{
    checkout_service_client::CheckoutServiceClient, coupon_service_client::CouponServiceClient,
    engagement_service_client::EngagementServiceClient, event_service_client::EventServiceClient,
    ledger_service_client::LedgerServiceClient, member_service_client::MemberServiceClient,
    program_service_client::ProgramServiceClient, report_service_client::ReportServiceClient,
    rule_service_client::RuleServiceClient, store_service_client::StoreServiceClient,
};

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Debug, Clone)]
pub struct BearerAuth(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, BearerAuth>;

#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    auth: BearerAuth,
}

impl Client {
    /// Connects to `endpoint` (`http://127.0.0.1:50051`) calling as `api_key`.
    pub async fn connect(endpoint: &str, api_key: &str) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(endpoint.to_string())?
            .connect()
            .await?;
        Ok(Client {
            channel,
            auth: BearerAuth(None),
        }
        .with_key(api_key))
    }

    /// A client over a channel set up by the caller (TLS, timeouts), calling as `api_key`.
    pub fn from_channel(channel: Channel, api_key: &str) -> Client {
        Client {
            channel,
            auth: BearerAuth(None),
        }
        .with_key(api_key)
    }

    /// The same connection, calling as another key (an empty key sends none).
    pub fn with_key(&self, api_key: &str) -> Client {
        let value = (!api_key.is_empty())
            .then(|| format!("Bearer {api_key}").parse().ok())
            .flatten();
        Client {
            channel: self.channel.clone(),
            auth: BearerAuth(value),
        }
    }

    /// The same key over a new connection (e.g. after the server restarted elsewhere).
    pub async fn reconnect(&self, endpoint: &str) -> Result<Client, tonic::transport::Error> {
        let channel = Endpoint::from_shared(endpoint.to_string())?
            .connect()
            .await?;
        Ok(Client {
            channel,
            auth: self.auth.clone(),
        })
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn authed(&self) -> Authed {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    pub fn members(&self) -> MemberServiceClient<Authed> {
        MemberServiceClient::new(self.authed())
    }

    pub fn stores(&self) -> StoreServiceClient<Authed> {
        StoreServiceClient::new(self.authed())
    }

    pub fn program(&self) -> ProgramServiceClient<Authed> {
        ProgramServiceClient::new(self.authed())
    }

    pub fn ledger(&self) -> LedgerServiceClient<Authed> {
        LedgerServiceClient::new(self.authed())
    }

    pub fn checkout(&self) -> CheckoutServiceClient<Authed> {
        CheckoutServiceClient::new(self.authed())
    }

    pub fn coupons(&self) -> CouponServiceClient<Authed> {
        CouponServiceClient::new(self.authed())
    }

    pub fn engagement(&self) -> EngagementServiceClient<Authed> {
        EngagementServiceClient::new(self.authed())
    }

    pub fn reports(&self) -> ReportServiceClient<Authed> {
        ReportServiceClient::new(self.authed())
    }

    pub fn rules(&self) -> RuleServiceClient<Authed> {
        RuleServiceClient::new(self.authed())
    }

    pub fn events(&self) -> EventServiceClient<Authed> {
        EventServiceClient::new(self.authed())
    }
}
