//! `all --timings` and `run --timings`: the per-stage breakdown printed to stderr after the
//! container ends (a table, or one line of JSON), every row a measurement, stdout untouched.

mod common;

use common::{assert_no_leaks, stderr, stdout, unique, Env};

const IMAGE: &str = "localhost/stepctr-busybox";

/// Every row the table has when the container runs attached with --rm.
const ROWS: [&str; 9] = [
    "stepctr", "pull", "load", "cgroup", "ns", "fs", "start", "run", "rm",
];

/// The table's rows as (name, ms, share %), and its total.
fn parse_table(err: &str) -> (Vec<(String, f64, f64)>, f64) {
    let head = err
        .find("# where the time went")
        .unwrap_or_else(|| panic!("no timings table in:\n{err}"));
    let mut rows = Vec::new();
    let mut total = None;
    for line in err[head..].lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            break;
        }
        let ms: f64 = f[1]
            .parse()
            .unwrap_or_else(|_| panic!("not a number of ms in {line:?}"));
        let share: f64 = f[2]
            .trim_end_matches('%')
            .parse()
            .unwrap_or_else(|_| panic!("not a share in {line:?}"));
        if f[0] == "total" {
            assert_eq!(share, 100.0, "{line}");
            total = Some(ms);
            break;
        }
        rows.push((f[0].to_string(), ms, share));
    }
    (
        rows,
        total.unwrap_or_else(|| panic!("no total line in:\n{err}")),
    )
}

fn all_timings_prints_every_stage_and_a_total() {
    let env = Env::new();
    let name = unique("timings");
    let out = env.run(&[
        "all",
        "--rm",
        "--name",
        &name,
        "--timings",
        "--",
        "/bin/true",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout(&out), "", "the table goes to stderr");
    let (rows, total) = parse_table(&err);
    let names: Vec<&str> = rows.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ROWS, "one row per stage, in order:\n{err}");
    for (n, ms, share) in &rows {
        assert!(*ms >= 0.0 && *share >= 0.0, "{n}: {ms} ms {share} %");
    }
    // Rows are printed to 0.01 ms: allow that much rounding per row.
    let sum: f64 = rows.iter().map(|(_, ms, _)| ms).sum();
    assert!(
        total + 0.005 * rows.len() as f64 >= sum,
        "total {total} < sum of rows {sum}:\n{err}"
    );
    assert!(total > 0.0, "{err}");
    // The table replaces the one-line note, and comes after the container's removal.
    assert!(!err.contains("# timings:"), "note and table both:\n{err}");
    let removed = err.find(&format!("container {name} removed")).expect(&err);
    assert!(
        removed < err.find("# where the time went").unwrap(),
        "{err}"
    );
    assert_no_leaks(&env, &name);
}

fn without_timings_all_keeps_its_note() {
    let env = Env::new();
    let name = unique("timings-note");
    let out = env.ok(&["all", "--rm", "--name", &name, "--", "/bin/true"]);
    let err = stderr(&out);
    let note = err
        .lines()
        .find(|l| l.starts_with("# timings: pull "))
        .unwrap_or_else(|| panic!("no # timings: note in:\n{err}"));
    assert!(
        note.contains("start+run") && note.contains("(total "),
        "{note}"
    );
    assert!(!err.contains("# where the time went"), "{err}");
    // -q: no note, no table (nothing was asked for).
    let name2 = unique("timings-quiet");
    let out = env.ok(&["-q", "all", "--rm", "--name", &name2, "--", "/bin/true"]);
    assert_eq!(stderr(&out), "");
    assert_no_leaks(&env, &name);
    assert_no_leaks(&env, &name2);
}

fn timings_json_parses_and_has_every_key() {
    let env = Env::new();
    let name = unique("timings-json");
    // Without --rm: rm_ms is there, as null.
    let out = env.ok(&[
        "-q",
        "all",
        "--name",
        &name,
        "--timings=json",
        "--",
        "/bin/true",
    ]);
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "-q: just the JSON line:\n{err}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("timings are JSON");
    let obj = v.as_object().expect("a JSON object");
    let mut sum = 0.0;
    for row in ROWS {
        let key = format!("{row}_ms");
        let val = obj.get(&key).unwrap_or_else(|| panic!("no {key} in {err}"));
        if row == "rm" {
            assert!(val.is_null(), "no --rm, so rm_ms is null: {err}");
            continue;
        }
        let ms = val
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number: {err}"));
        assert!(ms >= 0.0, "{key}: {ms}");
        sum += ms;
    }
    let total = obj["total_ms"].as_f64().expect("total_ms is a number");
    assert!(
        total + 0.0005 * ROWS.len() as f64 >= sum,
        "total {total} < sum {sum}"
    );
    assert_eq!(obj.len(), ROWS.len() + 1, "no other keys: {err}");
    env.rm_and_check(&name);
}

fn run_quiet_timings_keeps_stdout_the_containers() {
    let env = Env::new();
    let name = unique("timings-run");
    let out = env.run(&[
        "run",
        "-q",
        "--rm",
        "--name",
        &name,
        "--timings",
        IMAGE,
        "sh",
        "-c",
        "echo out",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout(&out), "out\n", "stdout is exactly the container's");
    let (rows, _) = parse_table(&err);
    let names: Vec<&str> = rows.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ROWS, "{err}");
    assert_no_leaks(&env, &name);
}

fn detached_timings_have_no_run() {
    let env = Env::new();
    let name = unique("timings-detached");
    let out = env.ok(&[
        "-q",
        "all",
        "-d",
        "--name",
        &name,
        "--timings=json",
        "--",
        "/bin/true",
    ]);
    let err = stderr(&out);
    let v: serde_json::Value = serde_json::from_str(err.trim()).expect("JSON");
    assert!(v["start_ms"].as_f64().is_some(), "{err}");
    assert!(v["run_ms"].is_null(), "PID 1's life is not over: {err}");
    // PID 1 may still be running (detached): -f stops it.
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks(&env, &name);
}

fn main() {
    common::run_tests(
        tests![
            all_timings_prints_every_stage_and_a_total,
            without_timings_all_keeps_its_note,
            timings_json_parses_and_has_every_key,
            run_quiet_timings_keeps_stdout_the_containers,
            detached_timings_have_no_run,
        ],
        true,
    );
}
