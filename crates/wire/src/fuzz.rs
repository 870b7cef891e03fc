//! The fuzzing entry point of the API's request bodies and list queries
//! (used by `fuzz/` with AFL++ and by the corpus replay test): the bytes are
//! decoded as every request body the API takes and as a query string, as
//! the API decodes them. Decoding must refuse what it cannot read with an
//! error, never panic, and what it accepts must re-encode and decode to the
//! same value; names that decode are checked by the naming rule too.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ListParams;
use crate::model::{
    CreateAccount, CreateDisk, CreateFolder, CreatePrincipal, CreateRoleAssignment, CreateSnapshot,
    CreateTenant, CreateToken, ExplainRequest, MoveAccount, ResizeDisk,
};

fn round_trip<T: DeserializeOwned + Serialize>(input: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(input).ok()?;
    let again = serde_json::to_vec(&v).expect("a decoded body encodes");
    let back: T = serde_json::from_slice(&again).expect("an encoded body decodes");
    assert_eq!(
        serde_json::to_vec(&back).expect("encodes"),
        again,
        "a body changed on a round trip"
    );
    Some(v)
}

/// Decode `input` as every request body and as a query. Panics only on a bug.
pub fn bodies(input: &[u8]) {
    if let Some(d) = round_trip::<CreateDisk>(input) {
        let _ = coffer_types::Name::new(&d.name);
    }
    round_trip::<ResizeDisk>(input);
    if let Some(s) = round_trip::<CreateSnapshot>(input) {
        let _ = coffer_types::Name::new(&s.name);
    }
    round_trip::<CreateTenant>(input);
    round_trip::<CreateFolder>(input);
    round_trip::<CreateAccount>(input);
    round_trip::<MoveAccount>(input);
    round_trip::<CreatePrincipal>(input);
    round_trip::<CreateToken>(input);
    round_trip::<CreateRoleAssignment>(input);
    round_trip::<ExplainRequest>(input);
    if let Ok(q) = serde_urlencoded::from_bytes::<ListParams>(input) {
        let _ = q.page_size();
    }
    if let Ok(s) = std::str::from_utf8(input) {
        let _ = s.parse::<coffer_types::ByteSize>();
    }
}
