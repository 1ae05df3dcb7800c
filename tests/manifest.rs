//! The scenario lab's manifest (tests/captures/manifest.json) says, per capture and connection,
//! what tdsscope must report: the outcome, exactly the expected finding codes (a missing or an
//! extra finding fails), the detail values the lab knows (numbers and states exactly, seconds
//! within a second), the login facts, and the capture-level findings. Connections the manifest
//! does not list must carry no error or warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::util::analyze_json;

fn by_code(findings: &Value) -> BTreeMap<String, Value> {
    findings
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| (f["code"].as_str().unwrap_or("").to_string(), f.clone()))
        .collect()
}

/// Whether a reported detail value matches the manifest's: seconds (`*_s`) within 1 s,
/// milliseconds (`*_ms`) within 20 % or 200 ms, other numbers exactly (floats within 10 %),
/// everything else equal.
fn matches(key: &str, want: &Value, got: &Value) -> bool {
    match (want.as_f64(), got.as_f64()) {
        (Some(w), Some(g)) if !want.is_boolean() => {
            if key.ends_with("_s") {
                (g - w).abs() <= 1.0
            } else if key.ends_with("_ms") {
                (g - w).abs() <= (0.2 * w).max(200.0)
            } else if want.is_f64() {
                (g - w).abs() <= 0.1 * w.abs()
            } else {
                g == w
            }
        }
        _ => want == got,
    }
}

fn compare_details(place: &str, want: &Value, got: &Value, problems: &mut Vec<String>) {
    let code = want["code"].as_str().unwrap_or("");
    for (key, w) in want["detail"].as_object().into_iter().flatten() {
        match got["detail"].get(key) {
            Some(g) if matches(key, w, g) => {}
            Some(g) => problems.push(format!("{place}: {code}.{key} is {g}, expected {w}")),
            None => problems.push(format!(
                "{place}: {code} has no detail {key} (expected {w})"
            )),
        }
    }
}

fn compare_findings(place: &str, want: &Value, got: &Value, problems: &mut Vec<String>) -> usize {
    let (want, got) = (by_code(want), by_code(got));
    let mut checked = 0;
    for code in want.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
        checked += 1;
        match (want.get(code), got.get(code)) {
            (Some(w), Some(g)) => compare_details(place, w, g, problems),
            (Some(_), None) => problems.push(format!("{place}: missing {code}")),
            (None, Some(g)) => problems.push(format!(
                "{place}: unexpected {code} ({})",
                g["summary"].as_str().unwrap_or("")
            )),
            (None, None) => {}
        }
    }
    checked
}

fn compare_login(place: &str, want: &Value, got: &Value, problems: &mut Vec<String>) {
    for (key, w) in want.as_object().into_iter().flatten() {
        let g = &got[key.as_str()];
        let same = match w {
            // The error's known fields only (the message text is the server's).
            Value::Object(fields) => fields.iter().all(|(k, v)| g[k.as_str()] == *v),
            _ => g == w,
        };
        if !same {
            problems.push(format!("{place}: login.{key} is {g}, expected {w}"));
        }
    }
}

#[test]
fn every_lab_connection_gets_exactly_the_expected_findings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let scenarios: Vec<Value> = match &manifest["scenarios"] {
        Value::Array(a) => a.clone(),
        Value::Object(m) => m.values().cloned().collect(),
        _ => panic!("manifest without scenarios"),
    };
    let mut problems = Vec::new();
    let mut checked = 0;
    for s in &scenarios {
        let capture = s["capture"].as_str().unwrap();
        let (report, _) = analyze_json(&[&dir.join(capture)]);
        let mut reported: Vec<&Value> = report["connections"].as_array().unwrap().iter().collect();
        // A client endpoint reused (port reuse) appears once per connection, in capture order.
        reported.sort_by_key(|c| (c["first"]["input"].as_u64(), c["first"]["frame"].as_u64()));
        let mut matched = BTreeSet::new();
        for expected in s["connections"].as_array().into_iter().flatten() {
            let place = format!("{capture} {}", expected["client"]);
            let found = reported.iter().find(|c| {
                c["client"] == expected["client"]
                    && c["server"] == expected["server"]
                    && !matched.contains(&c["id"].as_u64())
            });
            let Some(conn) = found else {
                problems.push(format!("{place}: no connection to {}", expected["server"]));
                continue;
            };
            matched.insert(conn["id"].as_u64());
            if conn["outcome"] != expected["outcome"] {
                problems.push(format!(
                    "{place}: outcome {}, expected {}",
                    conn["outcome"], expected["outcome"]
                ));
            }
            checked += compare_findings(
                &place,
                &expected["findings"],
                &conn["findings"],
                &mut problems,
            );
            if let Some(login) = expected.get("login") {
                compare_login(&place, login, &conn["login"], &mut problems);
            }
        }
        for c in reported
            .iter()
            .filter(|c| !matched.contains(&c["id"].as_u64()))
        {
            for f in c["findings"].as_array().into_iter().flatten() {
                if f["severity"] != "info" {
                    problems.push(format!(
                        "{capture} {} (not in the manifest): {} {}",
                        c["client"], f["severity"], f["code"]
                    ));
                }
            }
        }
        checked += compare_findings(
            &format!("{capture} (capture)"),
            &s["capture_findings"],
            &report["findings"],
            &mut problems,
        );
    }
    assert!(checked > 150, "only {checked} findings checked");
    assert!(
        problems.is_empty(),
        "{} differences from the manifest:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_matcher_tolerates_only_what_it_should() {
    use serde_json::json;
    assert!(matches("idle_s", &json!(5), &json!(5.9)));
    assert!(!matches("idle_s", &json!(5), &json!(6.2)));
    assert!(matches("delay_ms", &json!(1500), &json!(1650)));
    assert!(!matches("delay_ms", &json!(1500), &json!(2000)));
    assert!(matches("count", &json!(5), &json!(5)));
    assert!(!matches("count", &json!(5), &json!(6)));
    assert!(!matches("acknowledged", &json!(false), &json!(true)));
    assert!(!matches("phase", &json!("login"), &json!("request")));
}
