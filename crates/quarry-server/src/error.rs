//! Errors as the HTTP API sends them: `{"error": {"code", "message"}}` with
//! the status the application layer's table gives the error's kind.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use quarry_app::AppError;

/// An application error on its way out as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.body())).into_response()
    }
}
