//! The market-data API: bars, corporate actions, trades and quotes, exchanges and
//! conditions, latest values and snapshots.

use super::*;

impl AlpacaClient {
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
