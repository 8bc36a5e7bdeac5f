//! Runs the `tidemark` examples of README.md verbatim, so the documentation cannot rot: every
//! `$ tidemark ...` line of a console block runs, the output rows a ```csv block shows after a
//! `window` example are rows that example writes, and what the examples write is git-ignored.

mod common;

use std::path::Path;

use common::cli::{bin, scratch};

/// One `$ tidemark ...` line of the README's console blocks, split into arguments, with the
/// rows of the ```csv blocks that follow it (before the next example).
struct Example {
    args: Vec<String>,
    shown: Vec<String>,
}

fn examples() -> Vec<Example> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut examples: Vec<Example> = Vec::new();
    let mut in_csv = false;
    for line in readme.lines() {
        if in_csv {
            if line.starts_with("```") {
                in_csv = false;
            } else if let Some(last) = examples.last_mut() {
                last.shown.push(line.to_string());
            }
        } else if line == "```csv" {
            in_csv = true;
        } else if let Some(args) = line.strip_prefix("$ tidemark ") {
            examples.push(Example {
                args: args.split_whitespace().map(str::to_string).collect(),
                shown: Vec::new(),
            });
        }
    }
    examples
}

#[test]
fn readme_examples_run_and_produce_output() {
    let examples = examples();
    assert!(examples.len() >= 8, "README examples went missing");
    assert!(
        examples.iter().any(|e| e.args[0] == "bench"),
        "README bench examples went missing"
    );
    assert!(
        examples.iter().any(|e| !e.shown.is_empty()),
        "the README's window quick start shows no output rows"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("examples");
    std::fs::create_dir_all(dir.join("experiments/data")).unwrap();
    std::fs::copy(
        root.join("experiments/data/sample-events.csv"),
        dir.join("experiments/data/sample-events.csv"),
    )
    .unwrap();
    for spec in std::fs::read_dir(root.join("experiments")).unwrap() {
        let spec = spec.unwrap().path();
        if spec.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(
                &spec,
                dir.join("experiments").join(spec.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    let mut saw_late = false;
    for Example { args, shown } in examples {
        let _ = std::fs::remove_file(dir.join("out.csv"));
        let out = bin().args(&args).current_dir(&dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        if args[0] == "sweep" {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains(" to run"), "{args:?}: {stdout}");
            continue;
        }
        if args[0] == "bench" {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("achieved rate") && stdout.contains("latency p99"),
                "{args:?}: {stdout}"
            );
            continue;
        }
        assert!(stderr.contains("5000 records read"), "{args:?}: {stderr}");
        let written = std::fs::read_to_string(dir.join("out.csv")).unwrap();
        let rows: Vec<&str> = written.lines().collect();
        assert!(rows.len() > 1, "{args:?} wrote no results");
        if let Some((header, shown)) = shown.split_first() {
            assert_eq!(header, rows[0], "{args:?}: the README shows another header");
            for row in shown {
                assert!(
                    rows.contains(&row.as_str()),
                    "{args:?}: the README shows the row {row}, which the example does not write"
                );
            }
        }
        if args.iter().any(|a| a == "--late-output") {
            let late = std::fs::read_to_string(dir.join("late.csv")).unwrap();
            saw_late = late.lines().count() > 1;
        }
    }
    assert!(saw_late, "the late-output example should show late records");

    // Run from the repository root, the examples must leave `git status` clean: every file they
    // wrote is one the root .gitignore lists.
    let ignored: Vec<String> = std::fs::read_to_string(root.join(".gitignore"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix('/'))
        .map(str::to_string)
        .collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "experiments" {
            assert!(
                ignored.contains(&name),
                "a README example wrote {name}, which .gitignore does not list"
            );
        }
    }
    let mut inputs: Vec<String> = std::fs::read_dir(dir.join("experiments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    inputs.sort();
    assert_eq!(
        inputs
            .iter()
            .filter(|n| !n.ends_with(".toml"))
            .collect::<Vec<_>>(),
        ["data"],
        "a README example wrote into experiments/"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
