//! Process metrics in the Prometheus text format: counters and histograms with labels, kept in
//! one registry per process, written by the parts that see what happens (HTTP, the LLM client,
//! tools, turns, events, ingests) and rendered by `GET /metrics`. Every metric is declared in
//! [`METRICS`] with its help text; labels come from small, fixed sets (a route template, a
//! tool, a model name), never from learner input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
    Gauge,
}

/// Every metric: name, kind, help.
pub const METRICS: &[(&str, Kind, &str)] = &[
    ("tutor_http_requests_total", Kind::Counter, "HTTP requests by method, route template and status."),
    ("tutor_http_request_duration_seconds", Kind::Histogram, "HTTP answer time by method and route template."),
    ("tutor_llm_calls_total", Kind::Counter, "Model calls by model and outcome (ok, error)."),
    ("tutor_llm_tokens_total", Kind::Counter, "Model tokens by model and kind (prompt, completion)."),
    ("tutor_llm_call_duration_seconds", Kind::Histogram, "Model call time, to the end of the reply, by model."),
    ("tutor_tool_calls_total", Kind::Counter, "Tool calls by tool, caller (service, model) and outcome."),
    ("tutor_turns_total", Kind::Counter, "Tutor turns by engine (offline, llm, offline_fallback) and mode."),
    (
        "tutor_fallbacks_total",
        Kind::Counter,
        "Turns the offline engine answered after the LLM failed or its answer failed the checks.",
    ),
    ("tutor_flags_raised_total", Kind::Counter, "Struggle flags raised or extended."),
    ("tutor_flag_changes_total", Kind::Counter, "Flag status changes by educators, by the status reached."),
    ("tutor_events_total", Kind::Counter, "Learner statements by outcome (accepted, duplicate, refused)."),
    (
        "tutor_event_commits_total",
        Kind::Counter,
        "Durable transactions that committed event batches (SQLite group commit).",
    ),
    ("tutor_event_batches_committed_total", Kind::Counter, "Event batches committed by those transactions."),
    ("tutor_ingests_total", Kind::Counter, "Index builds by outcome (rebuilt, unchanged, failed)."),
    ("tutor_chat_turns_running", Kind::Gauge, "Chat turns running now."),
    ("tutor_index_ready", Kind::Gauge, "1 when an index and its content are served."),
];

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn declared(name: &str, kind: Kind) {
    debug_assert!(METRICS.iter().any(|(n, k, _)| *n == name && *k == kind), "undeclared metric {name}");
}

/// Adds `by` to a counter.
pub fn add(name: &'static str, l: &[(&'static str, &str)], by: u64) {
    declared(name, Kind::Counter);
    let mut r = registry().lock().expect("metrics lock");
    *r.counters.entry((name, labels(l))).or_default() += by as f64;
}

/// Adds one to a counter.
pub fn inc(name: &'static str, l: &[(&'static str, &str)]) {
    add(name, l, 1);
}

/// Records one observation of a histogram, in seconds.
pub fn observe(name: &'static str, l: &[(&'static str, &str)], secs: f64) {
    declared(name, Kind::Histogram);
    let mut r = registry().lock().expect("metrics lock");
    let h = r.histograms.entry((name, labels(l))).or_default();
    if h.counts.is_empty() {
        h.counts = vec![0; BUCKETS.len()];
    }
    for (i, b) in BUCKETS.iter().enumerate() {
        if secs <= *b {
            h.counts[i] += 1;
        }
    }
    h.sum += secs;
    h.count += 1;
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn label_text(l: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

/// Every metric in the Prometheus text format (version 0.0.4), with the gauges given.
pub fn render(gauges: &[(&'static str, f64)]) -> String {
    let r = registry().lock().expect("metrics lock");
    let mut out = String::new();
    for (name, kind, help) in METRICS {
        let kind_text = match kind {
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind_text}");
        match kind {
            Kind::Counter => {
                for ((_, l), v) in r.counters.range((*name, Vec::new())..).take_while(|((n, _), _)| n == name) {
                    let _ = writeln!(out, "{name}{} {v}", label_text(l, None));
                }
            }
            Kind::Histogram => {
                for ((_, l), h) in r.histograms.range((*name, Vec::new())..).take_while(|((n, _), _)| n == name) {
                    for (b, c) in BUCKETS.iter().zip(&h.counts) {
                        let _ = writeln!(out, "{name}_bucket{} {c}", label_text(l, Some(("le", b.to_string()))));
                    }
                    let _ = writeln!(out, "{name}_bucket{} {}", label_text(l, Some(("le", "+Inf".into()))), h.count);
                    let _ = writeln!(out, "{name}_sum{} {}", label_text(l, None), h.sum);
                    let _ = writeln!(out, "{name}_count{} {}", label_text(l, None), h.count);
                }
            }
            Kind::Gauge => {
                if let Some((_, v)) = gauges.iter().find(|(n, _)| n == name) {
                    let _ = writeln!(out, "{name} {v}");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        inc("tutor_events_total", &[("outcome", "accepted")]);
        add("tutor_events_total", &[("outcome", "accepted")], 2);
        observe("tutor_llm_call_duration_seconds", &[("model", "m\"x")], 0.3);
        let text = render(&[("tutor_index_ready", 1.0)]);
        assert!(text.contains("# TYPE tutor_events_total counter"), "{text}");
        let line = text.lines().find(|l| l.starts_with("tutor_events_total{outcome=\"accepted\"}")).unwrap();
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v >= 3.0, "{line}");
        assert!(text.contains("tutor_llm_call_duration_seconds_bucket{model=\"m\\\"x\",le=\"0.5\"}"), "{text}");
        assert!(text.contains("tutor_llm_call_duration_seconds_bucket{model=\"m\\\"x\",le=\"0.25\"} 0"), "{text}");
        assert!(text.contains("tutor_index_ready 1"), "{text}");
    }
}
