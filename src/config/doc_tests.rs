use super::*;

fn leaf_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => leaf_paths(t, &path, out),
            _ => out.push(path),
        }
    }
}

#[test]
fn configuration_doc_lists_every_key() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let mut keys = Vec::new();
    leaf_paths(
        &toml::Table::try_from(Config::default()).unwrap(),
        "",
        &mut keys,
    );
    for key in &keys {
        assert!(
            doc.contains(&format!("| `{key}` |")),
            "docs/configuration.md does not describe `{key}`"
        );
    }
    let documented = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(key, _)| key))
        .filter(|key| {
            (key.contains('.') || keys.iter().any(|k| k == key))
                && !key.chars().any(|c| c.is_ascii_uppercase())
        })
        .count();
    assert_eq!(
        documented,
        keys.len(),
        "docs/configuration.md describes keys the code does not have"
    );
}
