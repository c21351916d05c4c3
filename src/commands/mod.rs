//! One module per command group; [`run`] dispatches a parsed command line.

mod identity;
mod inject;
mod k8s;
pub(crate) mod local;
pub(crate) mod policy;
mod version;

use std::process::ExitCode;

use crate::cli::{
    Cli, Command, DiagnosticsCommand, FailoverCommand, MulticlusterCommand, VizCommand,
};

/// Runs the command and returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version(args) => version::run(&cli.global, &args).await,
        Command::Up(args) => local::up(&args).await,
        Command::Down(args) => local::down(&args).await,
        Command::Wan(command) => local::wan(&command).await,
        Command::K8s(command) => k8s::run(command).await,
        Command::Images(command) => crate::images::run(&command),
        Command::Charts(crate::cli::ChartsCommand::Generate { out }) => {
            for file in crate::install::chart::write(&out)? {
                println!("{}", out.join(file.path).display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Install(args) => {
            print!("{}", crate::install::render(&cli.global, &args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Upgrade(args) => {
            let rendered = if args.crds {
                crate::install::render(&cli.global, &args).await?
            } else {
                crate::install::upgrade::render(&cli.global, &args).await?
            };
            print!("{rendered}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => crate::check::run(&cli.global, &args).await,
        Command::Uninstall => {
            print!("{}", crate::install::render_uninstall(&cli.global).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Inject(args) => inject::run(&cli.global, &args).await,
        Command::Authz(args) => policy::authz(&cli.global, &args).await,
        Command::Diagnostics(DiagnosticsCommand::Policy(args)) => {
            policy::diagnostics(&cli.global, &args).await
        }
        Command::Diagnostics(DiagnosticsCommand::Outbound(args)) => {
            policy::outbound(&cli.global, &args).await
        }
        Command::Identity(command) => identity::run(command),
        Command::Demo(args) => crate::demo::run(&args).await,
        Command::Failover(FailoverCommand::Install(args)) => {
            print!("{}", crate::failover::install::render(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Failover(FailoverCommand::Status(args)) => {
            crate::failover::status::run(&cli.global, args.namespace.as_deref(), args.output)
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Multicluster(MulticlusterCommand::Install(args)) => {
            print!("{}", crate::multicluster::install::render(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Multicluster(MulticlusterCommand::Link(args)) => {
            print!(
                "{}",
                crate::multicluster::link::render(&cli.global, &args).await?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Multicluster(MulticlusterCommand::Gateways(args)) => {
            crate::multicluster::gateways::run(&cli.global, args.output).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Multicluster(MulticlusterCommand::Allow(args)) => {
            print!("{}", crate::multicluster::allow::render(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Viz(VizCommand::Install(args)) => {
            print!("{}", crate::viz::install::render(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Viz(VizCommand::Uninstall(args)) => {
            print!("{}", crate::viz::install::render_uninstall(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Viz(VizCommand::Check(args)) => {
            crate::viz::check::run(&cli.global, args.wait, args.output).await
        }
        Command::Viz(VizCommand::Stat(args)) => {
            crate::viz::stat::run(&cli.global, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Viz(VizCommand::Edges(args)) => {
            crate::viz::edges::run(&cli.global, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Viz(VizCommand::Routes(args)) => {
            crate::viz::routes::run(&cli.global, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Viz(VizCommand::Tap(args)) => {
            crate::viz::tap::run(&cli.global, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Viz(VizCommand::Top(args)) => {
            crate::viz::top::run(&cli.global, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Viz(VizCommand::Dashboard(args)) => {
            crate::viz::dashboard::run(&cli.global, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Multicluster(MulticlusterCommand::Check(args)) => {
            crate::multicluster::check::run(&cli.global, args.wait, args.output).await
        }
        Command::Multicluster(MulticlusterCommand::Unlink(args)) => {
            print!(
                "{}",
                crate::multicluster::link::render_unlink(&cli.global, &args.cluster_name).await?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
