//! `stagectl export k8s`: the stack as Kubernetes documents (the work is `export`).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::{load, Cli};
use crate::error::{exit, Error, Result};
use crate::export::k8s::{Options, Published};
use crate::export::{export_k8s, K8sRequest};

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Kubernetes documents: Deployments / StatefulSets / Jobs, Services, probes, Secrets,
    /// ConfigMaps, claims. Fields that do not carry over are listed on stderr.
    K8s(K8sArgs),
}

#[derive(Debug, Args)]
pub struct K8sArgs {
    /// Write one YAML file per document into DIR (default: one multi-document stream on stdout).
    #[arg(short = 'o', long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Put the values of `${secret:...}` env vars into the Secret (default: placeholders).
    #[arg(long)]
    include_secret_values: bool,
    /// How published host ports are exposed: a NodePort Service (any cluster) or a
    /// LoadBalancer Service listening on the host port.
    #[arg(long, value_enum, default_value_t = PublishedArg::NodePort)]
    published: PublishedArg,
    /// Storage requested by each PersistentVolumeClaim.
    #[arg(long, value_name = "QUANTITY", default_value = "1Gi")]
    volume_size: String,
    /// Image of the init containers waiting for a TCP port (needs sh and nc -z).
    #[arg(long, value_name = "IMAGE", default_value = "busybox:1.36")]
    wait_image: String,
    /// Image of the init containers waiting for a Job (kubectl as entrypoint).
    #[arg(long, value_name = "IMAGE", default_value = "registry.k8s.io/kubectl:v1.31.0")]
    kubectl_image: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PublishedArg {
    NodePort,
    LoadBalancer,
}

pub fn run(cli: &Cli, command: &ExportCommand) -> Result<i32> {
    let ExportCommand::K8s(args) = command;
    let manifest = load(cli)?;
    let options = Options {
        include_secret_values: args.include_secret_values,
        published: match args.published {
            PublishedArg::NodePort => Published::NodePort,
            PublishedArg::LoadBalancer => Published::LoadBalancer,
        },
        volume_size: args.volume_size.clone(),
        wait_image: args.wait_image.clone(),
        kubectl_image: args.kubectl_image.clone(),
    };
    let request = K8sRequest { output: args.output.clone(), options };
    let written = export_k8s(&manifest, &request).map_err(|e| Error::Usage(e.to_string()))?;
    for warning in &written.export.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(stream) = &written.stream {
        print!("{stream}");
    } else {
        eprintln!(
            "wrote {} documents to {}; apply with `kubectl apply -f {}`",
            written.files.len(),
            args.output.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            args.output.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    Ok(exit::OK)
}
