//! The figures of one run: a table for the terminal and a JSON document.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::{Value, json};

/// One measured figure, with its baseline and target where it has them.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub baseline: Option<f64>,
    /// `value / baseline`.
    pub ratio: Option<f64>,
    /// The target in words, such as `<= 10 ms`.
    pub target: Option<String>,
    pub met: Option<bool>,
}

/// Direction of a target: the value must stay at or below, or at or above.
#[derive(Clone, Copy)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

/// The figures of one scenario run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub machine: Value,
    pub settings: Value,
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn new(scenario: &str, settings: Value) -> Report {
        Report {
            scenario: scenario.to_string(),
            machine: machine(),
            settings,
            figures: Vec::new(),
        }
    }

    /// Adds a figure without a target.
    pub fn add(&mut self, name: &str, value: f64, unit: &str) -> &mut Figure {
        self.figures.push(Figure {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            baseline: None,
            ratio: None,
            target: None,
            met: None,
        });
        self.figures.last_mut().expect("a figure was just pushed")
    }

    /// Returns the figure called `name`, if it was added.
    pub fn figure_mut(&mut self, name: &str) -> Option<&mut Figure> {
        self.figures.iter_mut().find(|figure| figure.name == name)
    }

    /// Adds a figure checked against a target.
    pub fn add_target(&mut self, name: &str, value: f64, unit: &str, bound: Bound) -> &mut Figure {
        let figure = self.add(name, value, unit);
        let (text, met) = match bound {
            Bound::AtMost(limit) => (format!("<= {}", number(limit)), value <= limit),
            Bound::AtLeast(limit) => (format!(">= {}", number(limit)), value >= limit),
        };
        figure.target = Some(text);
        figure.met = Some(met);
        figure
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "bench {}  ({})", self.scenario, self.settings);
        let _ = writeln!(
            out,
            "{:<34} {:>14} {:<8} {:>14} {:>8} {:>14} {:>4}",
            "figure", "value", "unit", "baseline", "ratio", "target", "met"
        );
        for figure in &self.figures {
            let baseline = figure.baseline.map(number).unwrap_or_default();
            let ratio = figure.ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
            let met = match figure.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            let _ = writeln!(
                out,
                "{:<34} {:>14} {:<8} {:>14} {:>8} {:>14} {:>4}",
                figure.name,
                number(figure.value),
                figure.unit,
                baseline,
                ratio,
                figure.target.clone().unwrap_or_default(),
                met
            );
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("failed to write {}", path.display()))
    }
}

impl Figure {
    /// Sets the baseline and the ratio of the value to it.
    pub fn baseline(&mut self, baseline: f64) -> &mut Figure {
        self.baseline = Some(baseline);
        self.ratio = (baseline != 0.0).then(|| self.value / baseline);
        self
    }
}

fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// Core count, CPU model and load average, so figures can be compared.
fn machine() -> Value {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    json!({
        "cores": cores,
        "cpu_model": cpu_model,
        "load_average": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}
