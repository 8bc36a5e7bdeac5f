//! Embeds the git revision the binary is built from, for the `git_rev` field of bench reports
//! (`tidemark::harness::report::git_rev`): `TIDEMARK_GIT_REV` is the commit's full hash, with
//! `-dirty` appended when tracked files differ from it, or `unknown` outside a git checkout or
//! without git. Taken at build time so that a binary run elsewhere still reports its own build.

use std::path::PathBuf;
use std::process::Command;

/// The package directory, as cargo gives it to this run (not `env!`, which would bake in the
/// directory the script was first compiled in: a moved checkout or a copied target directory
/// would then ask git about a directory that may no longer exist).
fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into()))
}

/// Runs git in the package directory; `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    // Re-run when the sources change (the dirty flag) or HEAD, the branch or the index moves
    // (a commit, checkout or `git add`). Naming paths turns off cargo's default of re-running
    // on any change in the package, so every input is named.
    for path in [
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "benches",
        "tests",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    let rev = match git(&["rev-parse", "HEAD"]) {
        Some(rev) if !rev.is_empty() => {
            for (dir, files) in [
                ("--git-dir", &["HEAD", "index"][..]),
                ("--git-common-dir", &["packed-refs", "refs/heads"][..]),
            ] {
                if let Some(dir) = git(&["rev-parse", dir]) {
                    let dir = manifest_dir().join(dir);
                    for file in files {
                        println!("cargo:rerun-if-changed={}", dir.join(file).display());
                    }
                }
            }
            // Untracked files are left out: scratch files beside the sources do not make a
            // build dirty, and CI builds from a clean checkout.
            // `--no-optional-locks`: status must not refresh (rewrite) the index, which would
            // make the next build re-run this script, and so rebuild the crate, every time.
            let status = git(&[
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--untracked-files=no",
            ]);
            match status {
                Some(status) if status.is_empty() => rev,
                // Dirty, or its state unknown: do not claim a clean build.
                _ => format!("{rev}-dirty"),
            }
        }
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=TIDEMARK_GIT_REV={rev}");
}
