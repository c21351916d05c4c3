//! The results of `mesh check`: categories of named checks, each a success,
//! a warning or an error with a hint, printed as they complete (✔, ‼, ×)
//! or gathered into Linkerd's JSON shape for `--output json`.

use serde::Serialize;

use crate::cli::OutputFormat;

/// Why a check did not pass.
#[derive(Debug)]
pub enum Problem {
    /// It passed, with something the operator should know.
    Warning {
        /// What is wrong.
        error: String,
        /// What to do about it.
        hint: String,
    },
    /// It failed.
    Error {
        /// What is wrong.
        error: String,
        /// What to do about it.
        hint: String,
    },
}

impl Problem {
    /// A failure.
    pub fn error(error: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Error {
            error: error.into(),
            hint: hint.into(),
        }
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        match self {
            Self::Warning { error, .. } | Self::Error { error, .. } => error,
        }
    }

    /// A warning.
    pub fn warning(error: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Warning {
            error: error.into(),
            hint: hint.into(),
        }
    }
}

/// A check's outcome.
pub type Outcome = Result<(), Problem>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Success,
    Warning,
    Error,
}

#[derive(Debug, Serialize)]
struct CheckResult {
    description: String,
    result: Level,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Category {
    category_name: String,
    checks: Vec<CheckResult>,
}

/// Every result so far; prints each one as it arrives unless JSON is wanted.
#[derive(Debug)]
pub struct Report {
    format: OutputFormat,
    categories: Vec<Category>,
}

impl Report {
    /// An empty report printed in `format`.
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            categories: Vec::new(),
        }
    }

    fn human(&self) -> bool {
        self.format == OutputFormat::Table
    }

    /// Starts a category of checks.
    pub fn category(&mut self, name: &str) {
        if self.human() {
            if !self.categories.is_empty() {
                println!();
            }
            println!("{}", console::style(name).bold());
            println!("{}", "-".repeat(name.len()));
        }
        self.categories.push(Category {
            category_name: name.to_owned(),
            checks: Vec::new(),
        });
    }

    /// Records a check; returns whether later checks that need it can run
    /// (a warning does not stop them).
    pub fn record(&mut self, description: &str, outcome: Outcome) -> bool {
        let (result, error, hint) = match outcome {
            Ok(()) => (Level::Success, None, None),
            Err(Problem::Warning { error, hint }) => (Level::Warning, Some(error), Some(hint)),
            Err(Problem::Error { error, hint }) => (Level::Error, Some(error), Some(hint)),
        };
        if self.human() {
            let mark = match result {
                Level::Success => console::style("✔").green(),
                Level::Warning => console::style("‼").yellow(),
                Level::Error => console::style("×").red(),
            };
            println!("{mark} {description}");
            for line in error.iter().chain(&hint) {
                for part in line.lines() {
                    println!("    {part}");
                }
            }
        }
        let passed = result != Level::Error;
        let check = CheckResult {
            description: description.to_owned(),
            result,
            error,
            hint,
        };
        match self.categories.last_mut() {
            Some(category) => category.checks.push(check),
            None => self.categories.push(Category {
                category_name: String::new(),
                checks: vec![check],
            }),
        }
        passed
    }

    /// Whether no check failed.
    pub fn success(&self) -> bool {
        self.categories
            .iter()
            .flat_map(|c| &c.checks)
            .all(|c| c.result != Level::Error)
    }

    /// Prints the summary (or the JSON document) and returns the exit code
    /// it stands for: 1 when a check failed.
    pub fn exit_code(&self) -> anyhow::Result<std::process::ExitCode> {
        self.finish()?;
        Ok(if self.success() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        })
    }

    /// Prints the summary (or the JSON document).
    fn finish(&self) -> anyhow::Result<()> {
        if self.human() {
            println!();
            if self.success() {
                println!("Status check results are {}", console::style("✔").green());
            } else {
                println!("Status check results are {}", console::style("×").red());
            }
            return Ok(());
        }
        #[derive(Serialize)]
        struct Document<'a> {
            success: bool,
            categories: &'a [Category],
        }
        crate::output::print_json(&Document {
            success: self.success(),
            categories: &self.categories,
        })
    }
}
