use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml", &CheckContext::default())
}

#[test]
fn amounts_have_sane_upper_bounds() {
    let e = parse("[sim]\ninitial_cash_usd = \"40000000000000000000000000000\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sim.initial_cash_usd") && e.contains("out of range"),
        "{e}"
    );
    let e = parse("[risk]\nmax_gross_exposure_usd = \"1e20\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("risk.max_gross_exposure_usd"), "{e}");
    assert!(parse("[sim]\ninitial_cash_usd = \"1000000000000\"\n").is_ok());
}

#[test]
fn symbols_follow_alpacas_syntax() {
    for good in ["AAPL", "BRK.B", "ABR.PR.D", "SPY", "X", "QQQ3"] {
        assert!(is_symbol(good), "{good}");
    }
    for bad in [
        "",
        ".",
        "..",
        "...",
        "A.",
        ".A",
        "A..B",
        "a",
        "A B",
        "3M",
        "AAPL/",
        "A.B.C.D",
        "ABCDEFGHIJKLMNOPQ",
    ] {
        assert!(!is_symbol(bad), "{bad:?}");
    }
}

#[test]
fn empty_file_is_the_sim_default() {
    let c = parse("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.connection.mode, ConnectionMode::Sim);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        [connection]
        mode = "paper"
        [alpaca]
        requests_per_minit = 5
        request_timeout_ms = "fast"
        feed = "nasdaq"
        [sim]
        speed = 60.0
        sped = 3
        [tradin]
        symbols = ["AAPL"]
    "#;
    let err = parse(text).unwrap_err();
    let text = err.to_string();
    for needle in [
        "alpaca.requests_per_minit",
        "did you mean `requests_per_minute`",
        "alpaca.request_timeout_ms",
        "sim.sped: unknown key; did you mean",
        "tradin",
        "did you mean `trading`",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // The semantic problem (paper without keys) is listed beside the structural ones.
    assert!(text.contains("connection.mode"), "{text}");
    assert!(text.contains("alpaca.feed"), "{text}");
    assert_eq!(err.problems.len(), 6, "{text}");
}

#[test]
fn semantic_problems_are_all_listed() {
    let text = r#"
        [connection]
        mode = "live"
        [alpaca]
        feed = "nasdaq"
        data_url = "ftp://x"
        [sim]
        speed = -1.0
        [trading]
        symbols = ["AAPL", "aapl", "AAPL"]
    "#;
    let err = parse(text).unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    for p in [
        "connection.mode",
        "alpaca.feed",
        "alpaca.data_url",
        "sim.speed",
        "trading.symbols",
    ] {
        assert!(paths.contains(&p), "{p} missing: {err}");
    }
    assert!(err.to_string().contains("--live"), "{err}");
    assert!(err.to_string().contains("APCA_API_KEY_ID"), "{err}");
}

#[test]
fn live_with_keys_and_opt_in_is_accepted() {
    let ctx = CheckContext {
        live_opt_in: true,
        have_keys: true,
    };
    let c = Config::parse("[connection]\nmode = \"live\"\n", "t", &ctx).unwrap();
    assert_eq!(c.connection.mode, ConnectionMode::Live);
    let settings = c.client_settings(None, |_| None);
    assert_eq!(settings.trading_url, "https://api.alpaca.markets");
}

#[test]
fn syntax_errors_say_where() {
    let err = parse("[sim\nspeed = 1").unwrap_err();
    assert!(err.to_string().contains("not valid TOML"), "{err}");
}

#[test]
fn env_urls_override_the_config() {
    let c = Config::default();
    let env = |k: &str| match k {
        "APCA_API_BASE_URL" => Some("http://127.0.0.1:9".to_string()),
        "APCA_API_DATA_URL" => Some("http://127.0.0.1:8".to_string()),
        _ => None,
    };
    let s = c.client_settings(Some("http://127.0.0.1:7"), env);
    assert_eq!(
        (s.trading_url.as_str(), s.data_url.as_str()),
        ("http://127.0.0.1:9", "http://127.0.0.1:8")
    );
}

#[test]
fn credentials_from_env_or_directory_and_never_printed() {
    let env = |k: &str| match k {
        "APCA_API_KEY_ID" => Some("PKX".to_string()),
        "APCA_API_SECRET_KEY" => Some("s3cr3t-value".to_string()),
        _ => None,
    };
    let c = load_credentials(env).unwrap().unwrap();
    assert!(!format!("{c:?}").contains("s3cr3t-value"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CREDENTIAL_KEY_ID), "PKDIR\n").unwrap();
    std::fs::write(dir.path().join(CREDENTIAL_SECRET), "dir-secret\n").unwrap();
    let d = dir.path().to_string_lossy().to_string();
    let c = load_credentials(|k| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(c.key_id, "PKDIR");
    assert_eq!(c.secret.expose(), "dir-secret");
    let half = load_credentials(|k| (k == "APCA_API_KEY_ID").then(|| "x".to_string()));
    assert!(half.unwrap_err().contains("APCA_API_SECRET_KEY"));
}

#[test]
fn shipped_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let ctx = CheckContext {
        live_opt_in: true,
        have_keys: true,
    };
    for name in ["traderd.toml", "paper.example.toml", "live.example.toml"] {
        Config::load(&dir.join(name), &ctx).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        Config::load(&dir.join("traderd.toml"), &ctx).unwrap(),
        Config::default()
    );
}
