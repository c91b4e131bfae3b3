//! Every engine error mapped to its HTTP answer, in one place: handlers use `?` and never
//! choose a status code for a failure themselves.

use http::StatusCode;

use super::Reply;
use crate::engine::{ActionError, ClaimError, EngineError, ExtendError, Invalid};
use crate::store::StoreError;

/// What a handler returns: the answer, or the error answer `?` turned a failure into.
pub type Answer = Result<Reply, Reply>;

impl From<StoreError> for Reply {
    fn from(err: StoreError) -> Reply {
        Reply::internal(&err)
    }
}

impl From<EngineError> for Reply {
    fn from(err: EngineError) -> Reply {
        Reply::internal(&err)
    }
}

impl From<Invalid> for Reply {
    fn from(invalid: Invalid) -> Reply {
        Reply::bad_request(invalid.field, &invalid.message)
    }
}

impl From<ActionError> for Reply {
    fn from(err: ActionError) -> Reply {
        match err {
            ActionError::NotFound => Reply::not_found("instance"),
            ActionError::Busy(_) | ActionError::WrongStatus(_) | ActionError::MissingSetting(_) => {
                Reply::error(StatusCode::CONFLICT, err.to_string())
            }
            ActionError::Engine(err) => err.into(),
        }
    }
}

impl From<ClaimError> for Reply {
    fn from(err: ClaimError) -> Reply {
        match err {
            ClaimError::Invalid(invalid) => invalid.into(),
            ClaimError::NoIdle { retry_after } => {
                Reply::error(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
                    .retry_after(retry_after.as_secs())
            }
            ClaimError::Failed(_) => Reply::error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
            ClaimError::KeyReused => Reply::error(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()),
            ClaimError::Engine(err) => err.into(),
        }
    }
}

impl From<ExtendError> for Reply {
    fn from(err: ExtendError) -> Reply {
        match err {
            ExtendError::Invalid(invalid) => invalid.into(),
            ExtendError::NotFound => Reply::not_found("claim"),
            ExtendError::NotLive => Reply::error(StatusCode::CONFLICT, err.to_string()),
            ExtendError::Engine(err) => err.into(),
        }
    }
}
