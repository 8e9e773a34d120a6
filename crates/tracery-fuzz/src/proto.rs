//! The proto → domain conversions, fed whatever bytes prost decodes: an agent or a CLI of
//! another version, or a broken one, sends them.
//!
//! Input: one byte choosing the message type, then its encoding. Whatever converts must
//! convert back to proto and again to the same domain value (compared as encoded proto:
//! the domain types hold floats, so not all are `Eq`).

use prost::Message;
use tracery_model::wire::DecodedMessage;
use tracery_model::{DatabaseRead, Snapshot, Value, Variable};
use tracery_proto::v1;

/// `proto → domain → proto → domain` gives the domain value of the first step again.
fn round_trip<P, D>(bytes: &[u8])
where
    P: Message + Default + From<D>,
    D: TryFrom<P> + Clone,
{
    let Ok(msg) = P::decode(bytes) else {
        return;
    };
    let Ok(first) = D::try_from(msg) else {
        return;
    };
    let back = P::from(first.clone());
    let encoded = back.encode_to_vec();
    let Ok(second) = D::try_from(back) else {
        panic!(
            "a converted {} does not convert again",
            std::any::type_name::<D>()
        );
    };
    assert_eq!(
        P::from(second).encode_to_vec(),
        encoded,
        "a {} changed in a second round trip",
        std::any::type_name::<D>()
    );
}

/// One input (see the module docs for its layout).
pub fn run(data: &[u8]) {
    let [kind, bytes @ ..] = data else {
        return;
    };
    match kind % 6 {
        0 => round_trip::<v1::Snapshot, Snapshot>(bytes),
        1 => round_trip::<v1::Value, Value>(bytes),
        2 => round_trip::<v1::Variable, Variable>(bytes),
        3 => round_trip::<v1::DecodedMessage, DecodedMessage>(bytes),
        4 => round_trip::<v1::DatabaseRead, DatabaseRead>(bytes),
        _ => {
            if let Ok(hold) = v1::HoldTrace::decode(bytes) {
                let _ = tracery_model::freeze::HoldRequest::try_from(&hold);
            }
        }
    }
}
