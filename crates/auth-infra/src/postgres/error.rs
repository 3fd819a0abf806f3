//! Turns driver and pool errors into `StoreError`, separating "unreachable now" (503, retry)
//! from everything else.

use auth_core::ports::StoreError;
use diesel::result::{DatabaseErrorKind, Error};
use diesel_async::pooled_connection::deadpool::PoolError;

/// Messages of server errors that mean "the database is going away or overloaded", whose
/// SQLSTATE diesel-async does not expose (57P01..57P03 admin/crash shutdown, cannot connect
/// now, 57014 statement timeout).
const UNAVAILABLE_MESSAGES: [&str; 5] = [
    "terminating connection",
    "the database system is",
    "canceling statement due to statement timeout",
    "server closed the connection",
    "connection to server",
];

/// Classifies a query error.
#[must_use]
pub fn classify(err: Error) -> StoreError {
    let unavailable = match &err {
        Error::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::SerializationFailure => true,
            _ => UNAVAILABLE_MESSAGES
                .iter()
                .any(|m| info.message().contains(m)),
        },
        Error::BrokenTransactionManager => true,
        _ => false,
    };
    if unavailable {
        StoreError::unavailable(err)
    } else {
        StoreError::internal(err)
    }
}

/// Classifies a failure to get a pooled connection: all of them mean "not now".
pub(crate) fn pool_error(err: PoolError) -> StoreError {
    match err {
        PoolError::NoRuntimeSpecified => StoreError::internal(err),
        _ => StoreError::unavailable(err),
    }
}
