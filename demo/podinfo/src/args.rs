//! Command-line flags, read the way podinfo reads them.
//!
//! Manifests copied from podinfo's docs pass many flags (`--port-metrics`,
//! `--level`, `--backend-url`, …). The demo honours the ones that change
//! what a client sees and accepts every other one, so those manifests run
//! unchanged. Flags take `--name=value` or `--name value`; podinfo's
//! boolean flags take no value.

use std::time::Duration;

/// podinfo's flags that take no value.
const BOOLEAN_FLAGS: &[&str] = &[
    "h2c",
    "random-delay",
    "random-error",
    "unhealthy",
    "unready",
    "enable-version-from-file",
];

/// What the demo was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// HTTP port (`--port`, `PODINFO_PORT`), 9898 by default.
    pub port: u16,
    /// `--ui-message` / `PODINFO_UI_MESSAGE`.
    pub message: String,
    /// `--ui-color` / `PODINFO_UI_COLOR`.
    pub color: String,
    /// Start not ready (`--unready`).
    pub unready: bool,
    /// Start unhealthy (`--unhealthy`).
    pub unhealthy: bool,
    /// Share of requests answered with 500 (`MESH_DEMO_ERROR_RATE`, 0–1).
    pub error_rate: f64,
    /// Latency added to every request (`MESH_DEMO_DELAY`, e.g. `50ms`).
    pub delay: Duration,
    /// How long in-flight requests may take to finish on SIGTERM.
    pub shutdown_timeout: Duration,
}

/// Reads flags and the environment.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Settings> {
    let mut settings = Settings {
        port: 9898,
        message: format!("greetings from podinfo v{}", env!("CARGO_PKG_VERSION")),
        color: "#34577c".into(),
        unready: false,
        unhealthy: false,
        error_rate: 0.0,
        delay: Duration::ZERO,
        shutdown_timeout: Duration::from_secs(5),
    };
    if let Some(port) = env("PODINFO_PORT") {
        settings.port = parse_port(&port, "PODINFO_PORT")?;
    }
    if let Some(message) = env("PODINFO_UI_MESSAGE") {
        settings.message = message;
    }
    if let Some(color) = env("PODINFO_UI_COLOR") {
        settings.color = color;
    }
    if let Some(rate) = env("MESH_DEMO_ERROR_RATE") {
        settings.error_rate = rate
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| {
                anyhow::anyhow!("MESH_DEMO_ERROR_RATE={rate:?}: expected a number from 0 to 1")
            })?;
    }
    if let Some(delay) = env("MESH_DEMO_DELAY") {
        settings.delay = humantime::parse_duration(delay.trim()).map_err(|e| {
            anyhow::anyhow!("MESH_DEMO_DELAY={delay:?}: expected a duration such as 50ms ({e})")
        })?;
    }
    let mut args = args.into_iter().skip(1).peekable();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            anyhow::bail!("unexpected argument {arg:?}: podinfo takes only flags");
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (flag.to_string(), None),
        };
        if BOOLEAN_FLAGS.contains(&name.as_str()) {
            let on = inline.as_deref().is_none_or(|v| v != "false");
            match name.as_str() {
                "unready" => settings.unready = on,
                "unhealthy" => settings.unhealthy = on,
                _ => {}
            }
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => match args.next_if(|next| !next.starts_with('-')) {
                Some(value) => value,
                None => anyhow::bail!("flag --{name} needs a value"),
            },
        };
        match name.as_str() {
            "port" => settings.port = parse_port(&value, "--port")?,
            "ui-message" => settings.message = value,
            "ui-color" => settings.color = value,
            "server-shutdown-timeout" => {
                settings.shutdown_timeout = humantime::parse_duration(&value)
                    .map_err(|e| anyhow::anyhow!("--server-shutdown-timeout={value:?}: {e}"))?;
            }
            _ => {}
        }
    }
    Ok(settings)
}

fn parse_port(value: &str, name: &str) -> anyhow::Result<u16> {
    value
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| anyhow::anyhow!("{name}={value:?}: expected a port from 1 to 65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(
            std::iter::once("podinfo")
                .chain(args.iter().copied())
                .map(String::from),
            move |key| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        )
    }

    #[test]
    fn podinfo_docs_flags_are_accepted() {
        // The container args of podinfo's own Deployment manifest.
        let s = settings(
            &[
                "--port=9898",
                "--cert-path=/data/cert",
                "--port-metrics=9797",
                "--grpc-port=9999",
                "--grpc-service-name=podinfo",
                "--level=info",
                "--random-delay=false",
                "--random-error=false",
            ],
            &[("PODINFO_UI_COLOR", "#ff0000")],
        )
        .expect("podinfo's flags");
        assert_eq!(s.port, 9898);
        assert_eq!(s.color, "#ff0000");
        let s = settings(&["--level", "debug", "--unready", "--port", "8080"], &[]).expect("flags");
        assert_eq!(s.port, 8080);
        assert!(s.unready);
    }

    #[test]
    fn bad_values_name_the_flag_or_variable() {
        let err = settings(&["--port=x"], &[]).expect_err("bad port");
        assert!(err.to_string().contains("--port"), "{err}");
        let err = settings(&[], &[("MESH_DEMO_ERROR_RATE", "2")]).expect_err("bad rate");
        assert!(err.to_string().contains("MESH_DEMO_ERROR_RATE"), "{err}");
        let err = settings(&[], &[("MESH_DEMO_DELAY", "soon")]).expect_err("bad delay");
        assert!(err.to_string().contains("MESH_DEMO_DELAY"), "{err}");
        let err = settings(&["--port"], &[]).expect_err("missing value");
        assert!(err.to_string().contains("--port needs a value"), "{err}");
    }

    #[test]
    fn faults_come_from_the_environment() {
        let s = settings(
            &[],
            &[
                ("MESH_DEMO_ERROR_RATE", "0.25"),
                ("MESH_DEMO_DELAY", "40ms"),
            ],
        )
        .expect("faults");
        assert_eq!(s.error_rate, 0.25);
        assert_eq!(s.delay, Duration::from_millis(40));
    }
}
