//! The error type of record conversion and operator calls.

use std::fmt;

/// Why a record could not be read, written or processed. Its message becomes
/// the `reason` of the record's dead-letter entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// A placeholder that never reaches a user: "try the slower way".
    /// Empty, so it costs no allocation.
    pub(crate) fn retry() -> Self {
        Self(String::new())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }

    /// Prefixes the message with the field it concerns.
    pub(crate) fn in_field(self, field: &str) -> Self {
        Self(format!("field `{field}`: {}", self.0))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl serde::ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl From<serde_json::Error> for Error {
    /// Keeps serde_json's message without its position: the documents are
    /// single values, so "at line 1 column 5" only adds noise.
    fn from(e: serde_json::Error) -> Self {
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(at) if message[at..].contains(" column ") => message[..at].to_owned(),
            _ => message,
        };
        Self(message)
    }
}
