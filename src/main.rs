use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    gatepass::cli::main().await
}
