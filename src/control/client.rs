//! The client side of `traderd ctl`: one call, with a deadline and a bounded answer, or
//! following events.

use super::*;

/// The client side: one request, one answer.
pub async fn call(path: &Path, cmd: &str, args: &[String]) -> Result<Response, String> {
    call_within(path, cmd, args, CLIENT_TIMEOUT).await
}

/// [`call`], waiting at most `timeout` for the connection and then for the answer.
pub async fn call_within(
    path: &Path,
    cmd: &str,
    args: &[String],
    timeout: std::time::Duration,
) -> Result<Response, String> {
    let stream = connect(path, timeout).await?;
    let (read, mut write) = stream.into_split();
    let request = Request {
        v: PROTOCOL_VERSION,
        id: RequestId::number(1),
        cmd: cmd.into(),
        args: args.to_vec(),
    };
    let mut out = serde_json::to_string(&request).map_err(|e| e.to_string())?;
    out.push('\n');
    let exchange = async {
        // A daemon at its connection cap answers `busy` and closes without reading: the
        // write may fail while that answer waits to be read.
        let written = write.write_all(out.as_bytes()).await;
        match (read_reply(&mut BufReader::new(read)).await, written) {
            (Ok(Some(line)), _) => Ok(Some(line)),
            (_, Err(e)) => Err(e.to_string()),
            (other, Ok(())) => other,
        }
    };
    let line = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "the daemon at {} did not answer within {:.1} s: it may be overloaded or stuck (see its log)",
                path.display(),
                timeout.as_secs_f64()
            )
        })??
        .ok_or("the daemon closed the connection without answering")?;
    serde_json::from_slice(&line).map_err(|_| {
        format!(
            "{} answered something that is not traderd's protocol: is it traderd's socket?",
            path.display()
        )
    })
}

/// Connects within `timeout`.
pub(super) async fn connect(
    path: &Path,
    timeout: std::time::Duration,
) -> Result<UnixStream, String> {
    match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!(
            "cannot reach the daemon at {} ({e}): is `traderd run` running, and is this its socket? (--socket PATH)",
            path.display()
        )),
        Err(_) => Err(format!(
            "the daemon at {} did not take the connection within {:.1} s",
            path.display(),
            timeout.as_secs_f64()
        )),
    }
}

/// One answer line of at most [`MAX_REPLY`] bytes; `None` at the end of the stream.
pub(super) async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, String> {
    let mut line = Vec::new();
    let n = reader
        .take(MAX_REPLY as u64 + 1)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > MAX_REPLY {
        return Err(format!(
            "the daemon's answer is longer than {MAX_REPLY} bytes: not read"
        ));
    }
    Ok(Some(line))
}

/// Follows events: calls `each` with `{"kind":"following"}` once subscribed, then with every
/// event until the daemon closes.
pub async fn follow(path: &Path, mut each: impl FnMut(serde_json::Value)) -> Result<(), String> {
    let stream = connect(path, CLIENT_TIMEOUT).await?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"v\":1,\"id\":1,\"cmd\":\"events\"}\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(read);
    while let Some(line) = read_reply(&mut reader).await? {
        let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| e.to_string())?;
        if v.get("ok") == Some(&serde_json::Value::Bool(false)) {
            return Err(v["error"]["message"].as_str().unwrap_or("refused").into());
        }
        if let Some(event) = v.get("event") {
            each(event.clone());
        } else if v.get("ok") == Some(&serde_json::Value::Bool(true)) {
            each(serde_json::json!({ "kind": "following" }));
        }
    }
    Ok(())
}
