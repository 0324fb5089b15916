//! What the page's main thread spent its time on, from a Chromium trace
//! (`Tracing.start` … `Tracing.end` over CDP, the JSON trace format): the
//! renderer main thread (`CrRendererMain`) with the most events, its
//! top-level tasks (long tasks are those over 50 ms), and self time by event
//! name (an event's duration minus its children's), with how many layouts
//! ran inside script (forced, synchronous layouts).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct Ev {
    #[serde(default)]
    name: String,
    #[serde(default)]
    ph: String,
    #[serde(default)]
    ts: f64,
    #[serde(default)]
    dur: Option<f64>,
    #[serde(default)]
    pid: Value,
    #[serde(default)]
    tid: Value,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Doc {
    Object {
        #[serde(rename = "traceEvents")]
        trace_events: Vec<Ev>,
    },
    Array(Vec<Ev>),
}

#[derive(Serialize, Clone, Default)]
pub struct TraceSummary {
    /// First to last event of the main thread, ms.
    pub span_ms: f64,
    pub thread: String,
    pub events: u64,
    pub tasks: u64,
    /// Top-level task time / span.
    pub busy: f64,
    pub task_p50_ms: f64,
    pub task_p99_ms: f64,
    pub task_max_ms: f64,
    pub long_tasks: u64,
    pub long_task_total_ms: f64,
    /// (event name, self ms, count), the largest self time first.
    pub self_ms: Vec<(String, f64, u64)>,
    pub layouts: u64,
    pub layout_ms: f64,
    /// Layouts inside script (a script read geometry after a DOM change).
    pub forced_layouts: u64,
    pub forced_layout_ms: f64,
    /// Mean of the Layout events' `beginData.dirtyObjects` / `totalObjects`.
    pub layout_dirty_objects: f64,
    pub layout_total_objects: f64,
    /// `FireAnimationFrame` events (rAF callbacks run).
    pub animation_frames: u64,
}

/// Events whose descendants are "inside script".
const SCRIPT: &[&str] = &[
    "FunctionCall",
    "EvaluateScript",
    "v8.callFunction",
    "v8.run",
    "FireAnimationFrame",
    "EventDispatch",
    "TimerFire",
    "v8.evaluateModule",
];

fn id(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "?".into(),
    }
}

pub fn summarize(text: &str, top: usize) -> Result<TraceSummary, String> {
    let doc: Doc = serde_json::from_str(text).map_err(|e| format!("trace JSON: {e}"))?;
    let evs = match doc {
        Doc::Object { trace_events } => trace_events,
        Doc::Array(a) => a,
    };
    // The renderer main threads, and the one with the most events.
    let mut names: HashMap<(String, String), String> = HashMap::new();
    let mut counts: HashMap<(String, String), u64> = HashMap::new();
    for e in &evs {
        let key = (id(&e.pid), id(&e.tid));
        if e.ph == "M" && e.name == "thread_name" {
            if let Some(n) = e.args.as_ref().and_then(|a| a["name"].as_str()) {
                names.insert(key, n.to_string());
            }
        } else {
            *counts.entry(key).or_default() += 1;
        }
    }
    let main = counts
        .iter()
        .filter(|(k, _)| names.get(*k).map(String::as_str) == Some("CrRendererMain"))
        .max_by_key(|(_, n)| **n)
        .map(|(k, _)| k.clone())
        .ok_or("no CrRendererMain thread in the trace")?;
    // Complete events of that thread ("X", and "B"/"E" pairs), as (ts, dur, name).
    let mut xs: Vec<(f64, f64, String)> = Vec::new();
    let mut open: Vec<(f64, String)> = Vec::new();
    let (mut dirty, mut total, mut with_data) = (0.0, 0.0, 0u64);
    for e in evs {
        if (id(&e.pid), id(&e.tid)) != main {
            continue;
        }
        if e.name == "Layout"
            && let Some(b) = e.args.as_ref().map(|a| &a["beginData"])
            && let (Some(d), Some(t)) = (b["dirtyObjects"].as_f64(), b["totalObjects"].as_f64())
        {
            dirty += d;
            total += t;
            with_data += 1;
        }
        match e.ph.as_str() {
            "X" => xs.push((e.ts, e.dur.unwrap_or(0.0), e.name)),
            "B" => open.push((e.ts, e.name)),
            "E" => {
                if let Some((ts, name)) = open.pop() {
                    xs.push((ts, e.ts - ts, name));
                }
            }
            _ => {}
        }
    }
    xs.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut s = TraceSummary {
        thread: format!("{}/{} CrRendererMain", main.0, main.1),
        events: xs.len() as u64,
        ..Default::default()
    };
    if xs.is_empty() {
        return Ok(s);
    }
    let first = xs[0].0;
    let last = xs
        .iter()
        .map(|x| x.0 + x.1)
        .fold(f64::NEG_INFINITY, f64::max);
    s.span_ms = (last - first) / 1e3;
    struct Open {
        end: f64,
        dur: f64,
        children: f64,
        name: String,
        in_script: bool,
    }
    let mut by: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut tasks: Vec<f64> = Vec::new();
    let close = |o: Open, by: &mut BTreeMap<String, (f64, u64)>| {
        let e = by.entry(o.name).or_default();
        e.0 += (o.dur - o.children).max(0.0);
        e.1 += 1;
    };
    for (ts, dur, name) in xs {
        while stack.last().is_some_and(|o| o.end <= ts) {
            let o = stack.pop().expect("non-empty");
            close(o, &mut by);
        }
        let in_script = match stack.last_mut() {
            Some(p) => {
                p.children += dur;
                p.in_script || SCRIPT.contains(&p.name.as_str())
            }
            None => {
                tasks.push(dur / 1e3);
                false
            }
        };
        if name == "Layout" {
            s.layouts += 1;
            s.layout_ms += dur / 1e3;
            if in_script {
                s.forced_layouts += 1;
                s.forced_layout_ms += dur / 1e3;
            }
        }
        if name == "FireAnimationFrame" {
            s.animation_frames += 1;
        }
        stack.push(Open {
            end: ts + dur,
            dur,
            children: 0.0,
            name,
            in_script,
        });
    }
    while let Some(o) = stack.pop() {
        close(o, &mut by);
    }
    if with_data > 0 {
        s.layout_dirty_objects = dirty / with_data as f64;
        s.layout_total_objects = total / with_data as f64;
    }
    s.tasks = tasks.len() as u64;
    s.busy = tasks.iter().sum::<f64>() / s.span_ms.max(1e-9);
    s.long_tasks = tasks.iter().filter(|&&t| t > 50.0).count() as u64;
    s.long_task_total_ms = tasks.iter().filter(|&&t| t > 50.0).fold(0.0, |a, b| a + b);
    tasks.sort_by(f64::total_cmp);
    let q = |x: f64| tasks[((x * tasks.len() as f64) as usize).min(tasks.len() - 1)];
    s.task_p50_ms = q(0.5);
    s.task_p99_ms = q(0.99);
    s.task_max_ms = tasks[tasks.len() - 1];
    let mut v: Vec<(String, f64, u64)> = by
        .into_iter()
        .map(|(k, (us, n))| (k, us / 1e3, n))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(top);
    s.self_ms = v;
    Ok(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_time_nesting_and_forced_layout() {
        let t = r#"{"traceEvents":[
          {"ph":"M","name":"thread_name","pid":1,"tid":2,"args":{"name":"CrRendererMain"}},
          {"ph":"X","name":"RunTask","pid":1,"tid":2,"ts":0,"dur":100000},
          {"ph":"X","name":"FunctionCall","pid":1,"tid":2,"ts":10,"dur":50000},
          {"ph":"X","name":"Layout","pid":1,"tid":2,"ts":20,"dur":20000},
          {"ph":"X","name":"Layout","pid":1,"tid":2,"ts":60000,"dur":10000},
          {"ph":"X","name":"RunTask","pid":1,"tid":2,"ts":200000,"dur":1000},
          {"ph":"X","name":"RunTask","pid":9,"tid":9,"ts":0,"dur":5}
        ]}"#;
        let s = super::summarize(t, 10).unwrap();
        assert_eq!(s.tasks, 2);
        assert_eq!(s.long_tasks, 1);
        assert_eq!((s.layouts, s.forced_layouts), (2, 1));
        let get = |n: &str| s.self_ms.iter().find(|x| x.0 == n).unwrap().1;
        // 100 - 50 (FunctionCall) - 10 (the second Layout), plus the second task's 1 ms.
        assert!((get("RunTask") - 41.0).abs() < 1e-6);
        assert!((get("FunctionCall") - 30.0).abs() < 1e-6);
        assert!((get("Layout") - 30.0).abs() < 1e-6);
    }
}
