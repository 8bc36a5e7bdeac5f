//! The `tidemark` binary: see [`tidemark::cli`].
fn main() -> std::process::ExitCode {
    tidemark::cli::main()
}
