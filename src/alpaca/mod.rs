//! The only code that knows Alpaca's wire format: the serde model, the REST client, the
//! typed broker error, and the decimal helpers every money field goes through.

pub mod error;
pub mod model;
pub mod num;
pub mod rest;
pub mod stream;

pub use error::BrokerError;
pub use rest::{AlpacaClient, ClientSettings, Credentials};

/// A secret string (the API secret key). Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that must send it (an HTTP header, a stream auth message).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}
