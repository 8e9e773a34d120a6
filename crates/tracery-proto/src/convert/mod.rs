//! Hand-written conversions between generated `tracery.v1` messages and domain types.
//!
//! Domain to wire is infallible (`From`); wire to domain is `TryFrom` and fails with a
//! [`ConvertError`] naming the field, because proto3 lets any field or oneof be unset.

mod database;
mod freeze;
mod message;
mod snapshot;
mod value;
mod wire;

use thiserror::Error;

/// A message from the wire that does not make a valid domain value.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConvertError {
    /// A required field, oneof or enum was not set.
    #[error(
        "tracery.v1.{field} is not set; the peer sent an incomplete message: \
         check that CLI, controller and agents run the same Tracery version"
    )]
    Missing {
        /// The field, as `Message.field`.
        field: &'static str,
    },
    /// A field holds a value the domain type cannot represent.
    #[error(
        "tracery.v1.{field} = {value} is invalid: {reason}; \
         check that CLI, controller and agents run the same Tracery version"
    )]
    Invalid {
        /// The field, as `Message.field`.
        field: &'static str,
        /// The offending value, as received.
        value: String,
        /// What the value should have been.
        reason: &'static str,
    },
    /// A trace id or header match that does not scope anything.
    #[error("tracery.v1.{field} = {value:?} is invalid")]
    Scope {
        /// The field, as `Message.field`.
        field: &'static str,
        /// The offending value, as received.
        value: String,
        /// Why it is invalid.
        #[source]
        source: tracery_model::trace::ScopeError,
    },
}

impl ConvertError {
    fn missing(field: &'static str) -> Self {
        ConvertError::Missing { field }
    }

    fn invalid_because(
        field: &'static str,
        value: &str,
        source: tracery_model::trace::ScopeError,
    ) -> Self {
        ConvertError::Scope {
            field,
            value: value.to_owned(),
            source,
        }
    }

    fn invalid(field: &'static str, value: impl ToString, reason: &'static str) -> Self {
        ConvertError::Invalid {
            field,
            value: value.to_string(),
            reason,
        }
    }
}
