//! The symbols a newcomer's setup knows without being told: the simulator lists them, and the
//! config's `sim.symbols` defaults to them (and checks `trading.symbols` against them).

/// Symbol, name, exchange, and a plausible starting price (whole dollars).
pub const DEFAULT_SYMBOLS: &[(&str, &str, &str, i64)] = &[
    ("AAPL", "Apple Inc. Common Stock", "NASDAQ", 190),
    ("MSFT", "Microsoft Corporation Common Stock", "NASDAQ", 420),
    ("AMZN", "Amazon.com, Inc. Common Stock", "NASDAQ", 180),
    ("GOOGL", "Alphabet Inc. Class A Common Stock", "NASDAQ", 170),
    ("NVDA", "NVIDIA Corporation Common Stock", "NASDAQ", 120),
    (
        "META",
        "Meta Platforms, Inc. Class A Common Stock",
        "NASDAQ",
        500,
    ),
    ("TSLA", "Tesla, Inc. Common Stock", "NASDAQ", 250),
    (
        "AMD",
        "Advanced Micro Devices, Inc. Common Stock",
        "NASDAQ",
        150,
    ),
    ("SPY", "SPDR S&P 500 ETF Trust", "ARCA", 550),
    ("QQQ", "Invesco QQQ Trust, Series 1", "NASDAQ", 470),
];
