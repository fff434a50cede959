//! The Alpaca REST client: trading API and market-data API over reqwest (rustls).
//!
//! Every request goes through one path ([`AlpacaClient::execute`]): a governor rate limiter
//! (200 requests a minute by default) that also honours the broker's `X-Ratelimit-Remaining` /
//! `X-Ratelimit-Reset`, a per-request timeout, a tracing span, and typed errors. Requests that
//! are safe to repeat (GET, DELETE of a whole position or of orders) are retried with
//! exponential backoff and jitter on connectivity errors, 429 and 5xx. An order POST is never
//! blindly resent: see [`AlpacaClient::submit_order`].

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

/// Query for `GET /v2/orders`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListOrders {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nested: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbols: Option<String>,
}

/// Query for `GET /v2/account/activities`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListActivities {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_types: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
}

/// Query for `GET /v2/stocks/bars`.
#[derive(Debug, Clone, Serialize)]
pub struct BarsQuery {
    pub symbols: String,
    pub timeframe: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<String>,
    /// `raw` (Alpaca's default), `split`, `dividend` or `all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjustment: Option<String>,
}

impl BarsQuery {
    pub fn new(symbols: &[&str], timeframe: TimeFrame) -> Self {
        BarsQuery {
            symbols: symbols.join(","),
            timeframe: timeframe.to_string(),
            start: None,
            end: None,
            limit: None,
            page_token: None,
            feed: None,
            adjustment: None,
        }
    }
}

/// How much of a position `close_position` liquidates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CloseAmount {
    All,
    Qty(Decimal),
    Percentage(Decimal),
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

    pub async fn get_account(&self) -> Result<Account, BrokerError> {
        self.get::<_, ()>(Api::Trading, "/v2/account", None).await
    }

    pub async fn get_clock(&self) -> Result<Clock, BrokerError> {
        self.get::<_, ()>(Api::Trading, "/v2/clock", None).await
    }

    pub async fn get_calendar(
        &self,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<Vec<CalendarDay>, BrokerError> {
        let q = [("start", start.to_string()), ("end", end.to_string())];
        self.get_list(Api::Trading, "/v2/calendar", Some(&q)).await
    }

    pub async fn list_assets(&self) -> Result<Listing<Asset>, BrokerError> {
        self.get_listing(Api::Trading, "/v2/assets", Some(&[("status", "active")]))
            .await
    }

    pub async fn get_asset(&self, symbol: &str) -> Result<Asset, BrokerError> {
        self.get::<_, ()>(
            Api::Trading,
            &format!("/v2/assets/{}", path_segment(symbol)?),
            None,
        )
        .await
    }

    pub async fn get_account_configurations(&self) -> Result<AccountConfigurations, BrokerError> {
        self.get::<_, ()>(Api::Trading, "/v2/account/configurations", None)
            .await
    }

    pub async fn patch_account_configurations(
        &self,
        patch: &AccountConfigurationsPatch,
    ) -> Result<AccountConfigurations, BrokerError> {
        let path = "/v2/account/configurations";
        // Setting the same configuration twice has the same effect: safe to repeat.
        let resp = self
            .execute::<_, ()>(Method::PATCH, Api::Trading, path, None, Some(patch), true)
            .await?;
        decode(&format!("PATCH {path}"), &resp)
    }

    /// One page of account activities.
    pub async fn list_activities(
        &self,
        query: &ListActivities,
    ) -> Result<Listing<Activity>, BrokerError> {
        self.get_listing(Api::Trading, "/v2/account/activities", Some(query))
            .await
    }

    /// Every FILL activity after `after`, oldest first, following `page_token` paging.
    pub async fn fills_since(
        &self,
        after: Option<DateTime<Utc>>,
    ) -> Result<Listing<TradeActivity>, BrokerError> {
        let mut query = ListActivities {
            activity_types: Some("FILL".into()),
            after,
            direction: Some("asc"),
            page_size: Some(100),
            ..Default::default()
        };
        let mut fills = Listing::default();
        loop {
            let page = self.list_activities(&query).await?;
            let full = page.len() >= 100;
            let last_id = page.last_id.clone();
            let page = page.filter_map(|a| match a {
                Activity::Trade(t) => Some(t),
                Activity::NonTrade(_) => None,
            });
            fills.items.extend(page.items);
            fills.foreign.extend(page.foreign);
            match last_id {
                Some(id) if full => query.page_token = Some(id),
                _ => break,
            }
        }
        Ok(fills)
    }

    // ----- orders --------------------------------------------------------------------------

    /// Submits an order without ever creating it twice.
    ///
    /// The request gets a client order id if it has none. After an ambiguous failure (timeout,
    /// broken connection, 5xx, unreadable answer) the client asks
    /// `GET /v2/orders:by_client_order_id` and returns the order if the broker has it; only if
    /// the broker says it is absent is the POST sent again. A 429 means the broker did not take
    /// the order, so it is retried after the broker's reset. A refusal (4xx) is returned as is.
    pub async fn submit_order(&self, mut request: OrderRequest) -> Result<Order, BrokerError> {
        let client_order_id = request
            .client_order_id
            .get_or_insert_with(|| Uuid::new_v4().to_string())
            .clone();
        if client_order_id.is_empty() || client_order_id.len() > MAX_CLIENT_ORDER_ID_LEN {
            return Err(BrokerError::InvalidRequest(format!(
                "client_order_id must be 1 to {MAX_CLIENT_ORDER_ID_LEN} characters, got {}",
                client_order_id.len()
            )));
        }
        let path = "/v2/orders";
        let endpoint = format!("POST {path}");
        let max_attempts = u32::try_from(self.settings.max_retries)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let mut delays = self.backoff().without_max_times().build();
        let mut was_ambiguous = false;
        let mut last_error: Option<BrokerError> = None;
        for attempt in 1..=max_attempts {
            let outcome = self
                .send_once::<_, ()>(Method::POST, Api::Trading, path, None, Some(&request))
                .await
                .and_then(|resp| decode::<Order>(&endpoint, &resp));
            let err = match outcome {
                Ok(order) => return Ok(order),
                Err(err) => err,
            };
            let delay = delays.next().unwrap_or(self.settings.retry_max_delay);
            match &err {
                BrokerError::RateLimited { retry_after, .. } => {
                    tracing::warn!(client_order_id = %client_order_id, attempt, "order POST rate limited; the broker did not take it");
                    tokio::time::sleep(retry_after.map_or(delay, |w| w.max(delay))).await;
                    last_error = Some(err);
                    continue;
                }
                // A refusal after an ambiguous attempt may be the broker refusing a duplicate of
                // an order it did take: look before reporting.
                BrokerError::Api { status, .. }
                    if *status < 500 && !(was_ambiguous && *status == 422) =>
                {
                    return Err(err);
                }
                BrokerError::Connectivity {
                    kind: super::error::ConnectivityKind::Connect,
                    ..
                } => {
                    // Nothing was sent; safe to try again.
                    tracing::warn!(client_order_id = %client_order_id, attempt, error = %err, "cannot connect to submit order; retrying");
                    last_error = Some(err);
                    tokio::time::sleep(delay).await;
                    continue;
                }
                _ => {}
            }
            was_ambiguous = true;
            self.stats
                .order_lookups_after_ambiguity
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client_order_id = %client_order_id, attempt, error = %err, "order POST outcome unknown; asking the broker");
            match self.get_order_by_client_id(&client_order_id).await {
                Ok(Some(order)) => {
                    tracing::info!(client_order_id = %client_order_id, order_id = %order.id, "the broker has the order; not resending");
                    return Ok(order);
                }
                Ok(None) => {
                    if matches!(err, BrokerError::Api { status: 422, .. }) {
                        return Err(err);
                    }
                    tracing::warn!(client_order_id = %client_order_id, attempt, "the broker does not have the order; resending");
                    last_error = Some(err);
                    tokio::time::sleep(delay).await;
                }
                Err(lookup) => {
                    return Err(BrokerError::Ambiguous {
                        client_order_id,
                        attempts: attempt,
                        detail: format!("{err}; lookup failed: {lookup}"),
                    });
                }
            }
        }
        // Every attempt ended "not taken": connect refused, 429, or looked up and absent. The
        // order is known not to exist at the broker, so the last error says why.
        Err(last_error.unwrap_or(BrokerError::Ambiguous {
            client_order_id,
            attempts: max_attempts,
            detail: "no attempt was made".into(),
        }))
    }

    /// The order with this client order id, or `None` if the broker has none.
    pub async fn get_order_by_client_id(
        &self,
        client_order_id: &str,
    ) -> Result<Option<Order>, BrokerError> {
        let q = [("client_order_id", client_order_id)];
        match self
            .get(Api::Trading, "/v2/orders:by_client_order_id", Some(&q))
            .await
        {
            Ok(order) => Ok(Some(order)),
            Err(BrokerError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list_orders(&self, query: &ListOrders) -> Result<Listing<Order>, BrokerError> {
        self.get_listing(Api::Trading, "/v2/orders", Some(query))
            .await
    }

    pub async fn get_order(&self, id: Uuid) -> Result<Order, BrokerError> {
        self.get::<_, ()>(Api::Trading, &format!("/v2/orders/{id}"), None)
            .await
    }

    /// Replaces an order; returns the new order (the old one becomes `replaced`). Not retried:
    /// a second PATCH would target an order that is already replaced.
    pub async fn replace_order(
        &self,
        id: Uuid,
        request: &ReplaceOrderRequest,
    ) -> Result<Order, BrokerError> {
        let path = format!("/v2/orders/{id}");
        let resp = self
            .execute::<_, ()>(
                Method::PATCH,
                Api::Trading,
                &path,
                None,
                Some(request),
                false,
            )
            .await?;
        decode(&format!("PATCH {path}"), &resp)
    }

    /// Cancels one order (204). Safe to repeat.
    pub async fn cancel_order(&self, id: Uuid) -> Result<(), BrokerError> {
        let path = format!("/v2/orders/{id}");
        self.execute::<(), ()>(Method::DELETE, Api::Trading, &path, None, None, true)
            .await?;
        Ok(())
    }

    /// Cancels every open order; the 207 body says what happened to each.
    pub async fn cancel_all_orders(&self) -> Result<Vec<CancelOrderStatus>, BrokerError> {
        let resp = self
            .execute::<(), ()>(Method::DELETE, Api::Trading, "/v2/orders", None, None, true)
            .await?;
        decode_or_empty("DELETE /v2/orders", &resp)
    }

    // ----- positions -----------------------------------------------------------------------

    pub async fn list_positions(&self) -> Result<Listing<Position>, BrokerError> {
        self.get_listing::<_, ()>(Api::Trading, "/v2/positions", None)
            .await
    }

    /// The open position in `symbol`, or `None` if there is none.
    pub async fn get_position(&self, symbol: &str) -> Result<Option<Position>, BrokerError> {
        match self
            .get::<_, ()>(
                Api::Trading,
                &format!("/v2/positions/{}", path_segment(symbol)?),
                None,
            )
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(BrokerError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Liquidates a position. Closing all of it is safe to repeat (a repeat closes what is
    /// left); a partial close is not retried, since a repeat would sell twice.
    pub async fn close_position(
        &self,
        symbol: &str,
        amount: CloseAmount,
    ) -> Result<Order, BrokerError> {
        let path = format!("/v2/positions/{}", path_segment(symbol)?);
        let (query, idempotent): (Vec<(&str, String)>, bool) = match amount {
            CloseAmount::All => (vec![], true),
            CloseAmount::Qty(q) => (vec![("qty", q.to_string())], false),
            CloseAmount::Percentage(p) => (vec![("percentage", p.to_string())], false),
        };
        let resp = self
            .execute::<(), _>(
                Method::DELETE,
                Api::Trading,
                &path,
                Some(&query),
                None,
                idempotent,
            )
            .await?;
        decode(&format!("DELETE {path}"), &resp)
    }

    /// Liquidates every position, optionally cancelling open orders first; 207 per symbol.
    pub async fn close_all_positions(
        &self,
        cancel_orders: bool,
    ) -> Result<Vec<ClosePositionStatus>, BrokerError> {
        let q = [("cancel_orders", cancel_orders)];
        let resp = self
            .execute::<(), _>(
                Method::DELETE,
                Api::Trading,
                "/v2/positions",
                Some(&q),
                None,
                true,
            )
            .await?;
        decode_or_empty("DELETE /v2/positions", &resp)
    }

    // ----- market data ---------------------------------------------------------------------

    /// One page of bars.
    pub async fn get_bars_page(&self, query: &BarsQuery) -> Result<BarsPage, BrokerError> {
        self.get(Api::Data, "/v2/stocks/bars", Some(query)).await
    }

    /// Every bar the query covers, following `next_page_token`, merged per symbol.
    pub async fn get_bars(&self, query: &BarsQuery) -> Result<BarsPage, BrokerError> {
        let mut query = query.clone();
        let mut all = BarsPage::default();
        loop {
            let page = self.get_bars_page(&query).await?;
            for (symbol, bars) in page.bars {
                all.bars.entry(symbol).or_default().extend(bars);
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => query.page_token = Some(token),
                _ => break,
            }
        }
        Ok(all)
    }

    /// The forward and reverse splits of `symbols` with an ex-date in `[start, end]`, every
    /// page.
    pub async fn splits(
        &self,
        symbols: &[&str],
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<Vec<Split>, BrokerError> {
        let query = vec![
            ("symbols", symbols.join(",")),
            ("types", "forward_split,reverse_split".to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", "1000".to_string()),
        ];
        let mut out = Vec::new();
        self.data_pages(
            "/v1/corporate-actions",
            query,
            |page: CorporateActionsPage| {
                out.extend(page.corporate_actions.splits().cloned());
                page.next_page_token
            },
        )
        .await?;
        Ok(out)
    }

    /// Historical trades of `symbols` in `[start, end]`, every page, merged per symbol.
    pub async fn get_trades(
        &self,
        symbols: &[&str],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<TradesPage, BrokerError> {
        let mut all = TradesPage::default();
        self.data_pages(
            "/v2/stocks/trades",
            ticks_query(symbols, start, end),
            |page: TradesPage| {
                for (symbol, trades) in page.trades {
                    all.trades.entry(symbol).or_default().extend(trades);
                }
                page.next_page_token
            },
        )
        .await?;
        Ok(all)
    }

    /// Historical quotes of `symbols` in `[start, end]`, every page, merged per symbol.
    pub async fn get_quotes(
        &self,
        symbols: &[&str],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<QuotesPage, BrokerError> {
        let mut all = QuotesPage::default();
        self.data_pages(
            "/v2/stocks/quotes",
            ticks_query(symbols, start, end),
            |page: QuotesPage| {
                for (symbol, quotes) in page.quotes {
                    all.quotes.entry(symbol).or_default().extend(quotes);
                }
                page.next_page_token
            },
        )
        .await?;
        Ok(all)
    }

    /// Follows `next_page_token` through a market-data listing; `each` takes a page and answers
    /// its token. At most 1,000 pages: a broker that never ends a listing cannot keep the
    /// client in it.
    async fn data_pages<P: DeserializeOwned>(
        &self,
        path: &str,
        mut query: Vec<(&str, String)>,
        mut each: impl FnMut(P) -> Option<String>,
    ) -> Result<(), BrokerError> {
        for _ in 0..1000 {
            let page: P = self.get(Api::Data, path, Some(&query)).await?;
            match each(page) {
                Some(token) if !token.is_empty() => {
                    query.retain(|(k, _)| *k != "page_token");
                    query.push(("page_token", token));
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// `GET /v2/stocks/meta/exchanges`: exchange code → name.
    pub async fn exchanges(&self) -> Result<BTreeMap<String, String>, BrokerError> {
        self.get::<_, ()>(Api::Data, "/v2/stocks/meta/exchanges", None)
            .await
    }

    /// `GET /v2/stocks/meta/conditions/{trade|quote}`: condition code → meaning, for a tape.
    pub async fn conditions(
        &self,
        tick_type: &str,
        tape: &str,
    ) -> Result<BTreeMap<String, String>, BrokerError> {
        let path = format!("/v2/stocks/meta/conditions/{}", path_segment(tick_type)?);
        self.get(Api::Data, &path, Some(&[("tape", tape)])).await
    }

    /// A market-data GET whose only parameter is the comma-separated symbol list.
    async fn by_symbols<T: DeserializeOwned>(
        &self,
        path: &str,
        symbols: &[&str],
    ) -> Result<T, BrokerError> {
        self.get(Api::Data, path, Some(&[("symbols", symbols.join(","))]))
            .await
    }

    pub async fn latest_trades(&self, symbols: &[&str]) -> Result<LatestTrades, BrokerError> {
        self.by_symbols("/v2/stocks/trades/latest", symbols).await
    }

    pub async fn latest_quotes(&self, symbols: &[&str]) -> Result<LatestQuotes, BrokerError> {
        self.by_symbols("/v2/stocks/quotes/latest", symbols).await
    }

    pub async fn latest_bars(&self, symbols: &[&str]) -> Result<LatestBars, BrokerError> {
        self.by_symbols("/v2/stocks/bars/latest", symbols).await
    }

    pub async fn snapshots(&self, symbols: &[&str]) -> Result<Snapshots, BrokerError> {
        self.by_symbols("/v2/stocks/snapshots", symbols).await
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_where_a_list_is_expected_reads_as_empty() {
        let resp = Response {
            status: StatusCode::OK,
            body: b"null".to_vec(),
        };
        let list: Option<Vec<Position>> = decode("GET /v2/positions", &resp).unwrap();
        assert_eq!(list.unwrap_or_default(), Vec::new());
    }

    #[test]
    fn the_budget_holds_in_every_sixty_second_window() {
        use governor::clock::FakeRelativeClock;
        for per_minute in [200u32, 60, 10, 1000] {
            let clock = FakeRelativeClock::default();
            let limiter = RateLimiter::direct_with_clock(window_quota(per_minute), clock.clone());
            // A client that asks every 10 ms for five minutes: when was it let through?
            let mut passed: Vec<u64> = Vec::new();
            for ms in (0..300_000u64).step_by(10) {
                if limiter.check().is_ok() {
                    passed.push(ms);
                }
                clock.advance(Duration::from_millis(10));
            }
            let most = passed
                .iter()
                .map(|start| {
                    passed
                        .iter()
                        .filter(|t| **t >= *start && **t < start + 60_000)
                        .count()
                })
                .max()
                .unwrap_or(0);
            assert!(
                most as u32 <= per_minute,
                "{per_minute}/min: {most} in one window"
            );
            assert!(
                most as u32 >= per_minute * 9 / 10,
                "{per_minute}/min: only {most} used"
            );
        }
    }

    #[test]
    fn symbols_cannot_escape_the_path() {
        assert!(path_segment("AAPL").is_ok());
        assert!(path_segment("BRK.B").is_ok());
        for bad in ["", "../v2/account", "A/B", "A?x=1", "A B"] {
            assert!(path_segment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_bodies_keep_alpacas_code_and_message() {
        let e = api_error(
            "POST /v2/orders",
            StatusCode::FORBIDDEN,
            br#"{"code":40310000,"message":"insufficient buying power","buying_power":"1"}"#,
        );
        assert_eq!(e.code(), Some(40310000));
        assert!(e.to_string().contains("insufficient buying power"));
        let e = api_error(
            "GET /v2/stocks/bars",
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
        );
        assert_eq!(e.status(), Some(502));
        assert!(e.is_retryable());
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let creds = Credentials {
            key_id: "PKTEST".into(),
            secret: Secret::new("very-secret-value"),
        };
        let client =
            AlpacaClient::new(ClientSettings::for_base_url("http://127.0.0.1:1"), &creds).unwrap();
        for text in [format!("{creds:?}"), format!("{client:?}")] {
            assert!(!text.contains("very-secret-value"), "{text}");
        }
    }
}
