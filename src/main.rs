//! The `marginalia` binary: everything happens in [`marginalia::cli`].

fn main() -> std::process::ExitCode {
    marginalia::cli::run()
}
