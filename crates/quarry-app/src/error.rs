//! Errors as every front-end shows them: a stable `code`, a sentence for
//! people, and a [`ErrorKind`] that decides the HTTP status and the CLI's exit
//! code from one table.

use quarry_core::ErrorKind;
use serde::Serialize;

/// An error of an application call: `{"code", "message"}` on the wire.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct AppError {
    /// What kind of failure it is (not sent: the status says it).
    #[serde(skip)]
    #[ts(skip)]
    pub kind: ErrorKind,
    /// Stable machine-readable code.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// Result of an application call.
pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// An error of `kind` with a code and a message.
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        AppError {
            kind,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// A user error (`invalid_input` and the like).
    pub fn user(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::User, code, message)
    }

    /// A bug or a failure of the machine.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, "internal", message.to_string())
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        http_status(self.kind, &self.code)
    }

    /// The body `{"error": {"code", "message"}}` the HTTP API sends.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// The one table from kinds to HTTP statuses (a few codes refine theirs:
/// `unauthorized` is 401, `forbidden_*`/`outside_library`/`open_remote`
/// are 403, failures to open or read a document the user picked are 422).
pub fn http_status(kind: ErrorKind, code: &str) -> u16 {
    match code {
        "unauthorized" => return 401,
        "forbidden_host" | "outside_library" | "open_remote" => return 403,
        "open_failed" | "extract_failed" => return 422,
        _ => {}
    }
    match kind {
        ErrorKind::User => 400,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::Unavailable => 503,
        ErrorKind::Upstream => 502,
        ErrorKind::Internal => 500,
    }
}

/// The exit code a command-line run ends with after this kind of failure:
/// 2 when the user can fix it (bad input, something missing), 1 otherwise.
pub fn exit_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::User | ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::Unavailable => 2,
        ErrorKind::Upstream | ErrorKind::Internal => 1,
    }
}

impl From<quarry_core::Error> for AppError {
    fn from(e: quarry_core::Error) -> Self {
        AppError::new(e.kind(), e.code(), e.to_string())
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::internal(e)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_code_and_message() {
        let e = AppError::from(quarry_core::Error::Locked("/lib".into()));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({
                "code": "locked",
                "message": "library /lib is being indexed by another process; try again when it has finished"
            })
        );
        assert_eq!(e.body()["error"]["code"], "locked");
        assert_eq!(e.http_status(), 409);
    }

    #[test]
    fn kinds_decide_statuses_and_exit_codes() {
        use quarry_core::Error as E;
        let cases = [
            (E::InvalidInput("x".into()), 400, 2),
            (E::NoLibrary("/l".into()), 404, 2),
            (E::UnknownModel("m".into()), 404, 2),
            (E::ModelMissing { id: "m".into() }, 503, 2),
            (
                E::Provider {
                    provider: "p".into(),
                    reason: "r".into(),
                },
                502,
                1,
            ),
            (E::Internal("bug".into()), 500, 1),
        ];
        for (e, status, exit) in cases {
            let a = AppError::from(e.clone());
            assert_eq!(a.http_status(), status, "{e}");
            assert_eq!(exit_code(e.kind()), exit, "{e}");
        }
        assert_eq!(AppError::user("outside_library", "no").http_status(), 403);
    }
}
