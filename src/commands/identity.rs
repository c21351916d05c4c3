//! `mesh identity inspect`: a certificate chain, explained.

use std::io::Read;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use mesh_identity::ca::TrustRoots;
use mesh_identity::inspect::{self, ChainReport};

use crate::cli::{IdentityCommand, InspectArgs, OutputFormat};
use crate::output;

pub fn run(command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::Inspect(args) => inspect_chain(&args),
    }
}

fn inspect_chain(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let pem = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?
    };
    let roots = match &args.trust_anchors_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                TrustRoots::from_pem(&text)
                    .with_context(|| format!("--trust-anchors-file {}", path.display()))?,
            )
        }
        None => None,
    };
    let report = inspect::inspect(&pem, roots.as_ref(), SystemTime::now())
        .with_context(|| format!("{}", args.file.display()))?;
    match args.output {
        OutputFormat::Json => output::print_json(&report)?,
        OutputFormat::Table => print_report(&report),
    }
    let expired = report.certificates.iter().any(|c| c.expires_in_seconds < 0);
    Ok(if expired || report.untrusted.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(report: &ChainReport) {
    for (i, cert) in report.certificates.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let kind = if cert.is_ca {
            "CA certificate"
        } else {
            "leaf certificate"
        };
        println!(
            "{} #{} ({kind})",
            console::style("certificate").bold(),
            i + 1
        );
        let expiry = if cert.expires_in_seconds < 0 {
            console::style(format!(
                "{} (expired {} ago)",
                cert.not_after,
                humanize(-cert.expires_in_seconds)
            ))
            .red()
            .to_string()
        } else {
            format!(
                "{} (in {})",
                cert.not_after,
                humanize(cert.expires_in_seconds)
            )
        };
        let mut rows = vec![("subject", cert.subject.clone())];
        if !cert.identities.is_empty() {
            rows.push(("identity", cert.identities.join(", ")));
        }
        if !cert.uris.is_empty() {
            rows.push(("uri", cert.uris.join(", ")));
        }
        rows.push(("issuer", cert.issuer.clone()));
        rows.push(("valid from", cert.not_before.clone()));
        rows.push(("expires", expiry));
        rows.push(("serial", cert.serial.clone()));
        output::print_rows(&rows);
    }
    println!();
    match (&report.anchor, &report.untrusted) {
        (Some(anchor), _) => println!(
            "{} chains to trust anchor {anchor}",
            console::style("✔").green()
        ),
        (None, Some(why)) => println!("{} {why}", console::style("×").red()),
        (None, None) => {
            println!("(pass --trust-anchors-file to check which anchor the chain leads to)")
        }
    }
}

/// `93784` → `1d 2h 3m`.
fn humanize(seconds: i64) -> String {
    let (d, h, m) = (seconds / 86400, seconds % 86400 / 3600, seconds % 3600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}
