//! Errors as the API shows them: `{"error": {"code", "message"}}` with an
//! HTTP status chosen from the engine's error kind.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<quarry_core::Error> for ApiError {
    fn from(e: quarry_core::Error) -> Self {
        use quarry_core::Error as E;
        let status = match &e {
            E::Locked(_) => StatusCode::CONFLICT,
            E::NoLibrary(_) | E::UnknownModel(_) => StatusCode::NOT_FOUND,
            E::ModelMissing { .. } => StatusCode::SERVICE_UNAVAILABLE,
            E::Provider { .. } => StatusCode::BAD_GATEWAY,
            _ if e.is_user_error() => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
