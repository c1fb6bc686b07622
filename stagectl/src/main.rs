use clap::Parser;

fn main() {
    let cli = stagectl::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("STAGECTL_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = runtime.block_on(stagectl::cli::run(cli));
    // Leave without waiting for lingering log streams.
    runtime.shutdown_background();
    std::process::exit(code);
}
