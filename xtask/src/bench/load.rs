//! Load generators, each pinned to the load CPU and bounded in time: `wrk`
//! (HTTP/1.1), `h2load` (h2c, latency percentiles from its per-request log),
//! `iperf3` (bulk TCP), and a fixed-count keep-alive client for instruction
//! counts. Every target is on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::configs;
use super::peers::LOAD_CPU;

/// Tries of an iperf3 client that found the server still busy.
const IPERF3_ATTEMPTS: usize = 5;

/// What one load run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Requests completed, or bytes transferred for bulk TCP.
    pub units: f64,
    /// Requests per second, or bits per second for bulk TCP.
    pub rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Failed requests, non-2xx responses, timeouts.
    pub errors: u64,
}

/// A load generator invocation.
pub enum Load<'a> {
    Wrk {
        connections: usize,
        headers: &'a [(String, String)],
        path: &'a str,
    },
    H2load {
        connections: usize,
        streams: usize,
        /// Unary gRPC calls (POST of a gRPC frame, `te: trailers`) instead
        /// of GET /.
        grpc: bool,
    },
    Iperf3,
}

pub fn run(
    load: &Load,
    port: u16,
    seconds: u64,
    pin: bool,
    dir: &Path,
) -> Result<LoadResult, String> {
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let mut command = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", LOAD_CPU]);
        c
    } else {
        // `env` runs the program unchanged: the same shape without pinning.
        Command::new("env")
    };
    match load {
        Load::Wrk {
            connections,
            headers,
            path,
        } => {
            command.args([
                "wrk",
                "-t1",
                &format!("-c{connections}"),
                &format!("-d{seconds}s"),
                "--latency",
                "--timeout",
                "5s",
            ]);
            for (name, value) in headers.iter() {
                command.args(["-H", &format!("{name}: {value}")]);
            }
            command.arg(url(path));
            parse_wrk(&output_of(&mut command, seconds)?)
        }
        Load::H2load {
            connections,
            streams,
            grpc,
        } => {
            let log = dir.join("h2load.log");
            command
                .args([
                    "h2load",
                    "-t1",
                    &format!("-c{connections}"),
                    &format!("-m{streams}"),
                ])
                .args(["-D", &seconds.to_string(), "--log-file"])
                .arg(&log);
            if *grpc {
                command
                    .arg("-d")
                    .arg(dir.join(configs::GRPC_REQUEST_FILE))
                    .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
                    .arg(url(configs::GRPC_PATH));
            } else {
                command.arg(url("/"));
            }
            let mut result = parse_h2load(&output_of(&mut command, seconds)?)?;
            let log_text =
                std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            let (p50, p99) = h2load_percentiles(&log_text)?;
            result.p50_ms = Some(p50);
            result.p99_ms = Some(p99);
            Ok(result)
        }
        Load::Iperf3 => {
            command.args([
                "iperf3",
                "-c",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                &seconds.to_string(),
                "-J",
            ]);
            // The iperf3 server runs one test at a time and may still be
            // closing the previous one: it then refuses the control
            // connection. Retry a bounded number of times.
            let mut attempt = 0;
            loop {
                let result = output_of(&mut command, seconds).and_then(|json| parse_iperf3(&json));
                match result {
                    Err(e)
                        if attempt < IPERF3_ATTEMPTS
                            && (e.contains("busy") || e.contains("closed unexpectedly")) =>
                    {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    other => return other,
                }
            }
        }
    }
}

/// Runs a load generator with a hard deadline of its duration plus margin.
fn output_of(command: &mut Command, seconds: u64) -> Result<String, String> {
    let deadline = format!("{}", seconds + 20);
    let mut bounded = Command::new("timeout");
    bounded
        .args(["-k", "5", &deadline])
        .arg(command.get_program())
        .args(command.get_args());
    let output = bounded
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(stdout)
}

/// `394.00us`, `1.03ms`, `2.00s` → milliseconds.
fn parse_duration_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

pub fn parse_wrk(text: &str) -> Result<LoadResult, String> {
    let mut result = LoadResult::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => result.p50_ms = parse_duration_ms(value),
            ["99%", value] => result.p99_ms = parse_duration_ms(value),
            ["Requests/sec:", value] => result.rate = value.parse().unwrap_or(0.0),
            [count, "requests", "in", ..] => result.units = count.parse().unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                result.errors += count.parse::<u64>().unwrap_or(0)
            }
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0": a server closing a
                // `Connection: close` exchange shows up as read errors, which
                // are not failures; connect, write and timeout are.
                let joined = rest.join(" ");
                for part in joined.split(',') {
                    let mut kv = part.split_whitespace();
                    if let (Some(kind), Some(n)) = (kv.next(), kv.next()) {
                        if kind != "read" {
                            result.errors += n.parse::<u64>().unwrap_or(0);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if result.units == 0.0 || result.rate == 0.0 {
        return Err(format!("wrk completed no requests:\n{text}"));
    }
    Ok(result)
}

pub fn parse_h2load(text: &str) -> Result<LoadResult, String> {
    let mut result = LoadResult::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // "finished in 2.00s, 40000.00 req/s, 1.2MB/s"
            result.rate = rest
                .split(", ")
                .find_map(|part| part.strip_suffix(" req/s"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            // "N total, N started, N done, N succeeded, F failed, E errored, T timeout"
            for part in rest.split(", ") {
                let mut kv = part.split_whitespace();
                let n: u64 = kv.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                match kv.next() {
                    Some("succeeded") => result.units = n as f64,
                    Some("failed") | Some("errored") | Some("timeout") => result.errors += n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            // "N 2xx, N 3xx, N 4xx, N 5xx"
            for part in rest.split(", ") {
                let mut kv = part.split_whitespace();
                let n: u64 = kv.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                if matches!(kv.next(), Some("4xx") | Some("5xx")) {
                    result.errors += n;
                }
            }
        }
    }
    if result.units == 0.0 || result.rate == 0.0 {
        return Err(format!("h2load completed no requests:\n{text}"));
    }
    Ok(result)
}

/// p50 and p99 (ms) from h2load's `--log-file`: tab-separated start time,
/// status and response time in microseconds, one line per request.
pub fn h2load_percentiles(log: &str) -> Result<(f64, f64), String> {
    let mut micros: Vec<f64> = log
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    if micros.is_empty() {
        return Err("h2load log has no requests".to_string());
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize] / 1000.0;
    Ok((at(0.50), at(0.99)))
}

pub fn parse_iperf3(json: &str) -> Result<LoadResult, String> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("iperf3 output is not JSON ({e}): {json}"))?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        return Err(format!("iperf3: {error}"));
    }
    let received = &value["end"]["sum_received"];
    let bytes = received["bytes"].as_f64().unwrap_or(0.0);
    let bits_per_second = received["bits_per_second"].as_f64().unwrap_or(0.0);
    if bytes == 0.0 {
        return Err(format!("iperf3 transferred nothing: {json}"));
    }
    Ok(LoadResult {
        units: bytes,
        rate: bits_per_second,
        ..LoadResult::default()
    })
}

/// Sends exactly `count` h2c (prior knowledge) `GET /` requests with
/// `h2load -n`, over `connections` connections of up to `streams` concurrent
/// streams each (the `h2c` scenario's shape), for instruction counting.
/// Fails unless every request succeeded with a 2xx.
pub fn fixed_h2_requests(
    port: u16,
    count: usize,
    connections: usize,
    streams: usize,
    timeout_seconds: u64,
) -> Result<(), String> {
    let mut command = Command::new("h2load");
    command
        .args(["-t1", "-n", &count.to_string()])
        .args([format!("-c{connections}"), format!("-m{streams}")])
        .arg(format!("http://127.0.0.1:{port}/"));
    let result = parse_h2load(&output_of(&mut command, timeout_seconds)?)?;
    if result.units as usize != count || result.errors > 0 {
        return Err(format!(
            "h2load: {} of {count} requests succeeded, {} errors",
            result.units, result.errors
        ));
    }
    Ok(())
}

/// Sends `count` sequential keep-alive `GET /` requests on one connection and
/// reads each response (Content-Length bodies); for instruction counting.
pub fn fixed_requests(port: u16, count: usize, timeout: Duration) -> Result<(), String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    for i in 0..count {
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            .map_err(|e| format!("request {i}: {e}"))?;
        let mut content_length = 0usize;
        let mut status_line = String::new();
        reader
            .read_line(&mut status_line)
            .map_err(|e| format!("response {i}: {e}"))?;
        if !status_line.starts_with("HTTP/1.1 200") {
            return Err(format!(
                "response {i}: unexpected status line {status_line:?}"
            ));
        }
        loop {
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("response {i}: {e}"))?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; content_length];
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("body {i}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 2s test @ http://127.0.0.1:28080/\n  1 threads and 32 connections\n  Latency Distribution\n     50%  394.00us\n     75%  500.00us\n     90%  800.00us\n     99%    1.03ms\n  95831 requests in 2.00s, 13.98MB read\n  Socket errors: connect 0, read 12, write 0, timeout 2\n  Non-2xx or 3xx responses: 5\nRequests/sec:  47900.73\nTransfer/sec:      6.99MB\n";

    #[test]
    fn wrk_output_is_parsed() {
        let r = parse_wrk(WRK).unwrap();
        assert_eq!(r.units, 95831.0);
        assert_eq!(r.rate, 47900.73);
        assert_eq!(r.p50_ms, Some(0.394));
        assert_eq!(r.p99_ms, Some(1.03));
        assert_eq!(r.errors, 7);
    }

    #[test]
    fn wrk_without_requests_is_an_error() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n").is_err());
    }

    #[test]
    fn h2load_output_and_log_are_parsed() {
        let text = "finished in 2.00s, 40000.50 req/s, 1.2MB/s\nrequests: 80001 total, 80001 started, 80001 done, 80000 succeeded, 1 failed, 1 errored, 0 timeout\nstatus codes: 80000 2xx, 0 3xx, 0 4xx, 0 5xx\n";
        let r = parse_h2load(text).unwrap();
        assert_eq!((r.units, r.rate, r.errors), (80000.0, 40000.5, 2));
        let log: String = (1..=100)
            .map(|i| format!("1700000000{i}\t200\t{}\n", i * 10))
            .collect();
        assert_eq!(h2load_percentiles(&log).unwrap(), (0.51, 0.99));
        assert!(h2load_percentiles("").is_err());
    }

    #[test]
    fn iperf3_json_is_parsed_and_errors_reported() {
        let ok = r#"{"end":{"sum_received":{"bytes":1000000,"bits_per_second":8e9}}}"#;
        let r = parse_iperf3(ok).unwrap();
        assert_eq!((r.units, r.rate), (1e6, 8e9));
        assert!(parse_iperf3(r#"{"error":"unable to connect"}"#)
            .unwrap_err()
            .contains("unable"));
        assert!(parse_iperf3("not json").is_err());
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration_ms("2.00s"), Some(2000.0));
        assert_eq!(parse_duration_ms("12"), None);
    }
}
