//! Refresh tokens of CIBA grants: opaque, stored only under their hash, bound to their client
//! and consent (TOK-15…19; design.md, State). They are not rotated (TOK-17). Like access
//! tokens, each ends with the time its record may be dropped ([`crate::access_token`]).

use serde::{Deserialize, Serialize};

use crate::access_token::AccessToken;
use crate::auth_req::ClaimRequests;
use crate::clock::{Random, UnixTime};
use crate::error::ProtocolError;
use crate::store::{KeyValue, keys};

/// What the store keeps about a refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRecord {
    /// The client it was issued to (TOK-15).
    pub client_id: String,
    /// The consent it lives with (TOK-16, CONS-2).
    pub consent_id: String,
    /// The account holder.
    pub sub: String,
    /// The scope granted; a refresh may only narrow it (TOK-17).
    pub scope: Vec<String>,
    /// The acr the holder reached.
    pub acr: String,
    /// The claims the client asked for at userinfo (UI-6).
    pub userinfo_claims: ClaimRequests,
}

/// Stores `token` for `data` under its hash until `exp`, announced to the purge first
/// ([`crate::store::purge::announce`]).
pub fn store_token(
    store: &dyn KeyValue,
    random: &dyn Random,
    token: &AccessToken,
    data: &RefreshTokenRecord,
    exp: UnixTime,
) -> Result<(), ProtocolError> {
    let mut batch = crate::store::Batch::new();
    gather_token(store, random, &mut batch, token, data, exp)?;
    batch.write(store).map_err(unavailable)
}

fn unavailable(_: crate::store::StoreError) -> ProtocolError {
    ProtocolError::ServerError("the store is unavailable")
}

/// [`store_token`] into `batch`: the purge slot taken now, the entry and the record written
/// with the batch (issue 18).
pub fn gather_token(
    store: &dyn KeyValue,
    random: &dyn Random,
    batch: &mut crate::store::Batch,
    token: &AccessToken,
    data: &RefreshTokenRecord,
    exp: UnixTime,
) -> Result<(), ProtocolError> {
    let key = keys::refresh_token(token.expose());
    crate::store::purge::announce(store, exp, &[&key]).map_err(unavailable)?;
    batch.put(&key, data, exp, random).map_err(unavailable)
}
