//! API-key authentication: `authorization: Bearer <api key>` on every omo RPC.
//!
//! Authentication only says who the caller is; what the caller may do is checked by the engine
//! (`domain::auth`), so the role table lives in one place.

use tonic::{Request, Status, metadata::MetadataMap};

use super::status::{to_status, unauthenticated};
use crate::{domain::auth::Caller, engine::Engine};

/// Longest API key looked up (ours are 36 characters); longer values are malformed.
const MAX_KEY_LEN: usize = 256;

/// The authenticated caller of `request`; UNAUTHENTICATED when the key is missing, malformed or
/// unknown. Records the caller's key id in the RPC span's `caller` field.
pub async fn caller<T>(engine: &Engine, request: &Request<T>) -> Result<Caller, Status> {
    let api_key = bearer_key(request.metadata())?;
    match engine.authenticate(api_key).await {
        Ok(Some(caller)) => {
            tracing::Span::current().record("caller", caller.key_id.as_str());
            Ok(caller)
        }
        Ok(None) => Err(unauthenticated("unknown API key")),
        Err(error) => Err(to_status(error)),
    }
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
