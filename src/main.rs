//! The `traderd` binary: the command line of [`traderd::app`].

fn main() -> std::process::ExitCode {
    traderd::app::main()
}
