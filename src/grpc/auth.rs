//! API-key authentication and authorization at the edge: `authorization: Bearer <api key>` on
//! every omo RPC, then the caller's role (and channel/store scope, where the request names them)
//! before anything of the body is validated. A caller without the right learns nothing about the
//! request's rules, and nothing of a forbidden call reaches the writer (so no idempotency record
//! remembers it). The role table itself lives in one place, `domain::auth`; the engine checks it
//! again for whatever only the stored data can tell (an order's channel and store).

use tonic::{Request, Status, metadata::MetadataMap};

use super::status::{rate_limited, to_status, unauthenticated};
use crate::{
    domain::{
        DomainError,
        auth::{Caller, Operation},
        model::Channel,
    },
    engine::Engine,
    proto,
};

/// Longest API key looked up (ours are 36 characters); longer values are malformed.
const MAX_KEY_LEN: usize = 256;

/// The authenticated caller of `request`; UNAUTHENTICATED when the key is missing, malformed or
/// unknown. Records the role and key id on the request span ([`super::observe`]).
pub async fn caller<T>(engine: &Engine, request: &Request<T>) -> Result<Caller, Status> {
    let api_key = bearer_key(request.metadata())?;
    match engine.authenticate(api_key).await {
        Ok(Some(caller)) => {
            super::observe::record_caller(&caller);
            engine.admit(&caller).map_err(rate_limited)?;
            Ok(caller)
        }
        Ok(None) => Err(unauthenticated("unknown API key")),
        Err(error) => Err(to_status(error)),
    }
}

/// The authenticated caller of `request`, refused PERMISSION_DENIED unless its role may perform
/// `operation`.
pub async fn caller_for<T>(
    engine: &Engine,
    request: &Request<T>,
    operation: Operation,
) -> Result<Caller, Status> {
    let caller = caller(engine, request).await?;
    caller.require(operation).map_err(denied)?;
    Ok(caller)
}

/// Checks a checkout call's channel and store scope from the raw request fields, before they are
/// validated: a channel or store the caller may not use is PERMISSION_DENIED, whatever else is
/// wrong with the request. Every role may call checkout on some channel, so a request that names
/// no real channel is left to validation, which says the channel is required.
pub fn permit_checkout(caller: &Caller, channel: i32, store_id: &str) -> Result<(), Status> {
    let channel = match proto::Channel::try_from(channel) {
        Ok(proto::Channel::Ec) => Some(Channel::Ec),
        Ok(proto::Channel::Store) => Some(Channel::Store),
        Ok(proto::Channel::App) => Some(Channel::App),
        Ok(proto::Channel::Unspecified) | Err(_) => None,
    };
    match channel {
        Some(channel) => caller.require_checkout(channel, store_id).map_err(denied),
        None => Ok(()),
    }
}

fn denied(refusal: DomainError) -> Status {
    to_status(refusal.into())
}

/// The key of an `authorization: Bearer <key>` header.
fn bearer_key(metadata: &MetadataMap) -> Result<&str, Status> {
    let header = metadata
        .get("authorization")
        .ok_or_else(|| unauthenticated("missing authorization metadata (Bearer <api key>)"))?;
    let malformed = || unauthenticated("authorization must be \"Bearer <api key>\"");
    let value = header.to_str().map_err(|_| malformed())?;
    let (scheme, key) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let key = key.trim();
    let well_formed = scheme.eq_ignore_ascii_case("bearer")
        && !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.chars().all(|c| c.is_ascii_graphic());
    if well_formed {
        Ok(key)
    } else {
        Err(malformed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn metadata(value: Option<&'static str>) -> MetadataMap {
        let mut map = MetadataMap::new();
        if let Some(value) = value {
            map.insert("authorization", value.parse().expect("ascii"));
        }
        map
    }

    #[test]
    fn parses_bearer_keys() {
        assert_eq!(
            bearer_key(&metadata(Some("Bearer omo_abc"))).ok(),
            Some("omo_abc")
        );
        assert_eq!(
            bearer_key(&metadata(Some("bearer  omo_abc "))).ok(),
            Some("omo_abc")
        );
        for bad in [
            None,
            Some("omo_abc"),
            Some("Basic omo_abc"),
            Some("Bearer "),
            Some("Bearer a b"),
        ] {
            let status = bearer_key(&metadata(bad)).expect_err("refused");
            assert_eq!(status.code(), Code::Unauthenticated, "{bad:?}");
        }
    }
}
