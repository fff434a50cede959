//! The key schema walk: every unknown key (with a suggestion) and every value of the wrong
//! type, each checked on its own against the defaults.

use super::*;

/// Walks the user's table against the schema (the defaults): unknown keys, tables where
/// values belong and the reverse, and each leaf value tried on its own.
pub(super) fn check_keys(
    user: &toml::Table,
    schema: &toml::Table,
    prefix: &str,
    root: &toml::Table,
    out: &mut Vec<Problem>,
) {
    for (key, value) in user {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(expected) = schema.get(key) else {
            let hint = closest(key, schema.keys())
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            let known = schema
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Problem {
                path,
                message: format!("unknown key{hint} (known here: {known})"),
            });
            continue;
        };
        match (expected, value) {
            // Tables of the user's own keys: a registered strategy's parameters (it types and
            // checks them) and rebalance's weights by symbol (checked by its section).
            (toml::Value::Table(_), toml::Value::Table(_))
                if path == "strategy.params" || path == "strategy.rebalance.weights" => {}
            (toml::Value::Table(s), toml::Value::Table(u)) => check_keys(u, s, &path, root, out),
            (toml::Value::Table(_), _) => out.push(Problem {
                path,
                message: format!("must be a table ([{key}]), not a {}", value.type_str()),
            }),
            (_, _) => {
                if let Err(message) = try_leaf(root, &path, value) {
                    out.push(Problem { path, message });
                }
            }
        }
    }
}

pub(super) fn remove_path(table: &mut toml::Table, path: &str) {
    match path.split_once('.') {
        None => {
            table.remove(path);
        }
        Some((head, tail)) => {
            if let Some(toml::Value::Table(t)) = table.get_mut(head) {
                remove_path(t, tail);
            }
        }
    }
}

/// Puts one user value into the defaults and deserializes: does this value, alone, fit?
pub(super) fn try_leaf(root: &toml::Table, path: &str, value: &toml::Value) -> Result<(), String> {
    let mut tree = root.clone();
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut table = &mut tree;
    for p in parts {
        table = match table.get_mut(p) {
            Some(toml::Value::Table(t)) => t,
            _ => return Ok(()),
        };
    }
    table.insert(last.to_string(), value.clone());
    toml::Value::Table(tree)
        .try_into::<Config>()
        .map(|_| ())
        .map_err(|e| {
            let msg = e.message().trim().to_string();
            format!("{msg} (got {})", short(value))
        })
}

pub(super) fn short(v: &toml::Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(40).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

/// The known key closest to a mistyped one, if it is close enough to be a typo.
pub(super) fn closest<'a>(
    key: &str,
    known: impl Iterator<Item = &'a String>,
) -> Option<&'a String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for j in 0..b.len() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != b[j]))
                    .min(row[j] + 1)
                    .min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    known
        .map(|k| (distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
