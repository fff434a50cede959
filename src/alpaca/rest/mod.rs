//! The Alpaca REST client: trading API and market-data API over reqwest (rustls).
//!
//! Every request goes through one path ([`AlpacaClient::execute`]): a governor rate limiter
//! (200 requests a minute by default) that also honours the broker's `X-Ratelimit-Remaining` /
//! `X-Ratelimit-Reset`, a per-request timeout, a tracing span, and typed errors. Requests that
//! are safe to repeat (GET, DELETE of a whole position or of orders) are retried with
//! exponential backoff and jitter on connectivity errors, 429 and 5xx. An order POST is never
//! blindly resent: see [`AlpacaClient::submit_order`].

mod data;
mod queries;
#[cfg(test)]
mod tests;
mod trading;

pub use queries::{BarsQuery, CloseAmount, ListActivities, ListOrders};

use crate::alpaca::Secret;
use crate::alpaca::error::BrokerError;
use crate::alpaca::model::*;
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use chrono::{DateTime, NaiveDate, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;
use uuid::Uuid;

/// The longest client order id Alpaca accepts.
pub const MAX_CLIENT_ORDER_ID_LEN: usize = 48;

/// API key pair. The secret is a [`Secret`] and never printed.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub key_id: String,
    pub secret: Secret,
}

/// How the client talks to the broker. Built from the `[alpaca]` config section.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Trading API base, e.g. `https://paper-api.alpaca.markets` (no trailing slash needed).
    pub trading_url: String,
    /// Market-data API base, e.g. `https://data.alpaca.markets`.
    pub data_url: String,
    pub requests_per_minute: u32,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt for requests that are safe to repeat.
    pub max_retries: usize,
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
}

impl ClientSettings {
    /// Settings for a broker (real or simulated) at one base URL serving both APIs.
    pub fn for_base_url(base: &str) -> Self {
        ClientSettings {
            trading_url: base.to_string(),
            data_url: base.to_string(),
            requests_per_minute: 200,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_retries: 5,
            retry_min_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
        }
    }
}

/// Counters a caller (health monitor, tests) can read.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limited: AtomicU64,
    pub order_lookups_after_ambiguity: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    Trading,
    Data,
}

/// Background readers, each with a share of the request budget of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The account manager's refreshes.
    Account = 0,
    /// Reconciliation with the broker.
    Reconcile = 1,
}

/// Counts a waiting request down when it stops waiting (or its future is dropped).
struct WaitingGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The share of the request budget each background lane may use, in percent (two lanes:
/// at least 40 % is always left to orders and cancels).
pub const LANE_SHARE_PCT: u32 = 30;

/// A budget of `per_minute` requests that holds in **every** 60-second window, as a broker
/// counting per window sees it. A plain `Quota::per_minute(n)` allows a burst of `n` on top of
/// `n` a minute (up to `2n` in one window, and 429s from Alpaca); here a quarter is the burst
/// (what a start needs at once: warm-up, reconciliation, the account, the first orders) and the
/// rate is what is left: burst + rate x 60 s = `per_minute`.
pub fn window_quota(per_minute: u32) -> Quota {
    let per_minute = per_minute.max(1);
    let burst = (per_minute / 4).max(1);
    let rate = (per_minute - burst).max(1);
    let period = Duration::from_secs(60) / rate;
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

/// The Alpaca REST client. Cheap to clone; clones share the rate limiter and counters.
#[derive(Clone)]
pub struct AlpacaClient {
    http: reqwest::Client,
    settings: Arc<ClientSettings>,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// The share of the budget each background lane may take, so that orders and cancels
    /// always find room and one background reader cannot starve another: shared by all clones.
    lanes: Arc<[DefaultDirectRateLimiter; 2]>,
    /// This clone's lane: `None` for orders and everything else (the whole budget).
    lane: Option<Lane>,
    /// Requests of the main lane waiting for a permit: background reads wait until none is.
    main_waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// Set when the broker said `X-Ratelimit-Remaining: 0`: no request before this instant.
    blocked_until: Arc<Mutex<Option<Instant>>>,
    stats: Arc<ClientStats>,
    /// Told the outcome of every attempt (the health monitor); shared by all clones.
    observer: Arc<OnceLock<RestObserver>>,
}

/// The outcome of one request attempt, for whoever watches the broker's health.
#[derive(Debug, Clone)]
pub struct RestOutcome {
    /// `METHOD /path`.
    pub endpoint: String,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// True for what says the broker (or the way to it) is unwell: no answer, 5xx, 429.
    /// A refusal of the request itself (4xx) is not.
    pub broker_error: bool,
    pub latency: Duration,
}

pub type RestObserver = Box<dyn Fn(RestOutcome) + Send + Sync>;

impl std::fmt::Debug for AlpacaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaClient")
            .field("trading_url", &self.settings.trading_url)
            .field("data_url", &self.settings.data_url)
            .finish_non_exhaustive()
    }
}

struct Response {
    status: StatusCode,
    body: Vec<u8>,
}

/// reqwest is built without a bundled crypto provider; ring is ours. Call before building any
/// reqwest client. Installing twice is harmless (the second call reports the first provider,
/// which we ignore).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl AlpacaClient {
    pub fn new(settings: ClientSettings, credentials: &Credentials) -> Result<Self, BrokerError> {
        install_crypto_provider();
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(&credentials.key_id).map_err(|_| {
            BrokerError::InvalidRequest(
                "the API key id contains characters not allowed in an HTTP header".into(),
            )
        })?;
        key.set_sensitive(true);
        let mut secret = HeaderValue::from_str(credentials.secret.expose()).map_err(|_| {
            BrokerError::InvalidRequest(
                "the API secret contains characters not allowed in an HTTP header".into(),
            )
        })?;
        secret.set_sensitive(true);
        headers.insert("APCA-API-KEY-ID", key);
        headers.insert("APCA-API-SECRET-KEY", secret);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("traderd/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                BrokerError::InvalidRequest(format!(
                    "cannot build the HTTP client: {}",
                    super::error::error_chain(&e)
                ))
            })?;
        let per_minute = settings.requests_per_minute.max(1);
        Ok(AlpacaClient {
            http,
            limiter: Arc::new(RateLimiter::direct(window_quota(per_minute))),
            lanes: Arc::new(std::array::from_fn(|_| {
                RateLimiter::direct(window_quota((per_minute * LANE_SHARE_PCT / 100).max(1)))
            })),
            lane: None,
            settings: Arc::new(settings),
            blocked_until: Arc::new(Mutex::new(None)),
            main_waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            stats: Arc::new(ClientStats::default()),
            observer: Arc::new(OnceLock::new()),
        })
    }

    /// A clone whose requests are background reads in `lane`: each lane takes at most
    /// [`LANE_SHARE_PCT`] % of the budget, leaving the rest to orders and cancels.
    pub fn lane(&self, lane: Lane) -> AlpacaClient {
        AlpacaClient {
            lane: Some(lane),
            ..self.clone()
        }
    }

    /// Sets who is told the outcome of every request attempt (once; later calls are ignored
    /// and answer false). Every clone of this client reports to it.
    pub fn set_observer(&self, observer: RestObserver) -> bool {
        self.observer.set(observer).is_ok()
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_min_delay)
            .with_max_delay(self.settings.retry_max_delay)
            .with_max_times(self.settings.max_retries)
            .with_jitter()
    }

    fn url(&self, api: Api, path: &str) -> String {
        let base = match api {
            Api::Trading => &self.settings.trading_url,
            Api::Data => &self.settings.data_url,
        };
        format!("{}{}", base.trim_end_matches('/'), path)
    }

    async fn wait_for_permit(&self) {
        let blocked = self.blocked_until.lock().ok().and_then(|g| *g);
        if let Some(until) = blocked {
            let now = Instant::now();
            if until > now {
                tracing::info!(
                    wait_ms = (until - now).as_millis() as u64,
                    "broker rate limit reached; waiting for reset"
                );
                tokio::time::sleep_until(until.into()).await;
            }
        }
        match self.lane {
            // Background reads go after every request of the main lane that is waiting (an
            // order, a cancel, the flatten procedure's reads): they only take what is left.
            Some(lane) => {
                self.lanes[lane as usize].until_ready().await;
                while self.main_waiting.load(std::sync::atomic::Ordering::Acquire) > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                self.limiter.until_ready().await;
            }
            None => {
                self.main_waiting
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                let _done = WaitingGuard(&self.main_waiting);
                self.limiter.until_ready().await;
            }
        }
    }

    /// Remembers the broker's own view of our remaining budget.
    fn note_rate_headers(&self, headers: &HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let (Some(remaining), Some(reset)) =
            (num("x-ratelimit-remaining"), num("x-ratelimit-reset"))
        else {
            return;
        };
        if remaining > 0 {
            return;
        }
        let wait = reset_delay(reset);
        if let Ok(mut guard) = self.blocked_until.lock() {
            *guard = Some(Instant::now() + wait);
        }
    }

    /// One attempt: rate limit, send, read. Maps every failure to a [`BrokerError`].
    async fn send_once<B: Serialize + ?Sized, Q: Serialize + ?Sized>(
        &self,
        method: Method,
        api: Api,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
    ) -> Result<Response, BrokerError> {
        let endpoint = format!("{method} {path}");
        self.wait_for_permit().await;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .http
            .request(method.clone(), self.url(api, path))
            .timeout(self.settings.request_timeout);
        if let Some(q) = query {
            req = req.query(q);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let span = tracing::debug_span!("alpaca.request", method = %method, path = %path, status = tracing::field::Empty);
        let started = Instant::now();
        let result = async {
            let resp = req
                .send()
                .await
                .map_err(|e| BrokerError::from_reqwest(&endpoint, e))?;
            let status = resp.status();
            self.note_rate_headers(resp.headers());
            let reset = resp
                .headers()
                .get("x-ratelimit-reset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = resp
                .bytes()
                .await
                .map_err(|e| BrokerError::from_reqwest(&endpoint, e))?
                .to_vec();
            tracing::Span::current().record("status", status.as_u16());
            if status.is_success() {
                return Ok(Response { status, body });
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Err(BrokerError::RateLimited {
                    endpoint: endpoint.clone(),
                    retry_after: reset.map(reset_delay),
                });
            }
            Err(api_error(&endpoint, status, &body))
        }
        .instrument(span)
        .await;
        tracing::debug!(endpoint = %endpoint, elapsed_ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "alpaca request finished");
        if let Some(observe) = self.observer.get() {
            let (status, broker_error) = match &result {
                Ok(r) => (Some(r.status.as_u16()), false),
                Err(BrokerError::Api { status, .. }) => (Some(*status), *status >= 500),
                Err(BrokerError::RateLimited { .. }) => (Some(429), true),
                Err(e) => (None, e.is_connectivity()),
            };
            observe(RestOutcome {
                endpoint,
                status,
                broker_error,
                latency: started.elapsed(),
            });
        }
        result
    }

    /// Sends a request, retrying it if `idempotent` and the error is retryable.
    async fn execute<B: Serialize + ?Sized, Q: Serialize + ?Sized>(
        &self,
        method: Method,
        api: Api,
        path: &str,
        query: Option<&Q>,
        body: Option<&B>,
        idempotent: bool,
    ) -> Result<Response, BrokerError> {
        if !idempotent {
            return self.send_once(method, api, path, query, body).await;
        }
        let attempt = || self.send_once(method.clone(), api, path, query, body);
        attempt
            .retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(BrokerError::is_retryable)
            .adjust(|err, planned| match (err, planned) {
                (BrokerError::RateLimited { retry_after: Some(wait), .. }, Some(planned)) => Some(planned.max(*wait)),
                (_, planned) => planned,
            })
            .notify(|err, delay| {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %path, delay_ms = delay.as_millis() as u64, error = %err, "retrying broker request");
            })
            .await
    }

    async fn get<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        api: Api,
        path: &str,
        query: Option<&Q>,
    ) -> Result<T, BrokerError> {
        let resp = self
            .execute::<(), Q>(Method::GET, api, path, query, None, true)
            .await?;
        decode(&format!("GET {path}"), &resp)
    }

    /// A list the daemon reads whole whatever is in the account: decoded element by element,
    /// an entry it cannot model becomes [`Foreign`] (see [`Listing`]); `null` reads as empty.
    async fn get_listing<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        api: Api,
        path: &str,
        query: Option<&Q>,
    ) -> Result<Listing<T>, BrokerError> {
        let resp = self
            .execute::<(), Q>(Method::GET, api, path, query, None, true)
            .await?;
        let listing = Listing::decode(&resp.body).map_err(|e| BrokerError::Decode {
            endpoint: format!("GET {path}"),
            detail: format!("HTTP {}: {e}", resp.status.as_u16()),
        })?;
        if !listing.foreign.is_empty() {
            tracing::debug!(path = %path, foreign = listing.foreign.len(), "entries the daemon cannot model");
        }
        Ok(listing)
    }

    /// A list endpoint: `null` where the list is expected reads as empty.
    async fn get_list<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        api: Api,
        path: &str,
        query: Option<&Q>,
    ) -> Result<Vec<T>, BrokerError> {
        let list: Option<Vec<T>> = self.get(api, path, query).await?;
        Ok(list.unwrap_or_default())
    }

    // ----- account, clock, calendar, assets -------------------------------------------------
}

/// How long until an `X-Ratelimit-Reset` epoch second, capped to one minute.
fn reset_delay(reset_epoch_s: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(reset_epoch_s)
        .saturating_sub(now)
        .clamp(Duration::from_millis(50), Duration::from_secs(60))
}

/// A symbol as one URL path segment; anything that could change the path is refused.
fn path_segment(symbol: &str) -> Result<&str, BrokerError> {
    let ok = !symbol.is_empty()
        && symbol.len() <= 64
        && symbol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if ok {
        Ok(symbol)
    } else {
        Err(BrokerError::InvalidRequest(format!(
            "not a valid symbol: {symbol:?}"
        )))
    }
}

fn api_error(endpoint: &str, status: StatusCode, body: &[u8]) -> BrokerError {
    let parsed: Option<ApiErrorBody> = serde_json::from_slice(body).ok();
    let message = match &parsed {
        Some(b) => b.message.clone(),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_string()
            } else {
                text.chars().take(200).collect()
            }
        }
    };
    BrokerError::Api {
        endpoint: endpoint.to_string(),
        status: status.as_u16(),
        code: parsed.as_ref().and_then(|b| b.code),
        message,
        body: parsed.map(Box::new),
    }
}

/// The query of a ticks listing: symbols, window, the largest page.
fn ticks_query(
    symbols: &[&str],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    vec![
        ("symbols", symbols.join(",")),
        ("start", start.to_rfc3339()),
        ("end", end.to_rfc3339()),
        ("limit", "10000".to_string()),
    ]
}

fn decode<T: DeserializeOwned>(endpoint: &str, resp: &Response) -> Result<T, BrokerError> {
    serde_json::from_slice(&resp.body).map_err(|e| BrokerError::Decode {
        endpoint: endpoint.to_string(),
        detail: format!("HTTP {}: {e}", resp.status.as_u16()),
    })
}

fn decode_or_empty<T: DeserializeOwned>(
    endpoint: &str,
    resp: &Response,
) -> Result<Vec<T>, BrokerError> {
    if resp.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    decode(endpoint, resp)
}
