//! Runs the `tidemark` examples of README.md verbatim, so the documentation cannot rot.

use std::path::Path;
use std::process::Command;

/// The `$ tidemark ...` lines of the README's console blocks, split into arguments.
fn examples() -> Vec<Vec<String>> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| line.strip_prefix("$ tidemark "))
        .map(|args| args.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn readme_examples_run_and_produce_output() {
    let examples = examples();
    assert!(examples.len() >= 8, "README examples went missing");
    assert!(
        examples.iter().any(|a| a[0] == "bench"),
        "README bench examples went missing"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("tidemark-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
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
    for args in examples {
        let _ = std::fs::remove_file(dir.join("out.csv"));
        let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
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
        let rows = std::fs::read_to_string(dir.join("out.csv"))
            .unwrap()
            .lines()
            .count();
        assert!(rows > 1, "{args:?} wrote no results");
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
        inputs.iter().filter(|n| !n.ends_with(".toml")).collect::<Vec<_>>(),
        ["data"],
        "a README example wrote into experiments/"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
