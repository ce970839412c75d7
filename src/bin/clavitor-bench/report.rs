//! Figures, their same-run references and goals, and the two ways to print them.

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    PerSecond,
    Millis,
    Count,
    /// Decimal megabytes (10^6 bytes), as in the goals.
    Megabytes,
    /// Percent of one CPU core.
    CorePercent,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::PerSecond => "per_second",
            Unit::Millis => "ms",
            Unit::Count => "count",
            Unit::Megabytes => "MB",
            Unit::CorePercent => "percent_of_one_core",
        }
    }

    fn format(self, v: f64) -> String {
        if v.is_nan() {
            return "n/a".into();
        }
        match self {
            Unit::PerSecond => format!("{}/s", thousands(v)),
            Unit::Millis if v < 10.0 => format!("{v:.3} ms"),
            Unit::Millis => format!("{v:.1} ms"),
            Unit::Count => format!("{v:.1}"),
            Unit::Megabytes => format!("{v:.1} MB"),
            Unit::CorePercent => format!("{v:.2}% of a core"),
        }
    }
}

/// What a figure is compared with, measured in the same run.
#[derive(Debug, Clone)]
pub struct Reference {
    pub label: String,
    pub value: f64,
}

/// A target; every bound given must hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct Goal {
    pub at_least: Option<f64>,
    pub below: Option<f64>,
    pub at_most: Option<f64>,
    /// Lower bound on value / reference.
    pub ratio_at_least: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable key for `--json`.
    pub key: &'static str,
    pub label: String,
    pub value: f64,
    pub unit: Unit,
    pub reference: Option<Reference>,
    pub goal: Option<Goal>,
    /// Extra facts for `--json` (counts, errors, settings).
    pub details: Map<String, Value>,
}

impl Figure {
    pub fn new(key: &'static str, label: impl Into<String>, value: f64, unit: Unit) -> Self {
        Self {
            key,
            label: label.into(),
            value,
            unit,
            reference: None,
            goal: None,
            details: Map::new(),
        }
    }

    pub fn reference(mut self, label: impl Into<String>, value: f64) -> Self {
        self.reference = Some(Reference {
            label: label.into(),
            value,
        });
        self
    }

    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn ratio(&self) -> Option<f64> {
        self.reference
            .as_ref()
            .filter(|r| r.value > 0.0)
            .map(|r| self.value / r.value)
    }

    pub fn met(&self) -> Option<bool> {
        let g = self.goal?;
        let mut ok = !self.value.is_nan();
        if let Some(min) = g.at_least {
            ok &= self.value >= min;
        }
        if let Some(max) = g.below {
            ok &= self.value < max;
        }
        if let Some(max) = g.at_most {
            ok &= self.value <= max;
        }
        if let Some(min) = g.ratio_at_least {
            ok &= self.ratio().is_some_and(|r| r >= min);
        }
        Some(ok)
    }

    fn ratio_text(&self) -> String {
        match (self.ratio(), self.unit) {
            (None, _) => "-".into(),
            // Throughput: share of the ceiling. Time: how many times the reference.
            (Some(r), Unit::PerSecond | Unit::Count) => format!("{:.0}%", r * 100.0),
            (Some(r), Unit::Millis | Unit::Megabytes | Unit::CorePercent) => format!("{r:.1}x"),
        }
    }

    fn goal_text(&self) -> String {
        let Some(g) = self.goal else {
            return "-".into();
        };
        let mut parts = Vec::new();
        if let Some(v) = g.at_least {
            parts.push(format!(">= {}", self.unit.format(v)));
        }
        if let Some(v) = g.below {
            parts.push(format!("< {}", self.unit.format(v)));
        }
        if let Some(v) = g.at_most {
            parts.push(format!("<= {}", self.unit.format(v)));
        }
        if let Some(r) = g.ratio_at_least {
            parts.push(format!(">= {:.0}% of ref", r * 100.0));
        }
        parts.join(", ")
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub struct Report {
    pub header: Vec<(String, String)>,
    pub figures: Vec<Figure>,
    pub failures: Vec<(String, String)>,
}

impl Report {
    pub fn all_goals_met(&self) -> bool {
        self.failures.is_empty() && self.figures.iter().all(|f| f.met() != Some(false))
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.header {
            out.push_str(&format!("{k:<12} {v}\n"));
        }
        out.push('\n');
        let head = [
            "Figure",
            "Clavitor",
            "Reference (same run)",
            "Ratio",
            "Goal",
            "Met",
        ];
        let rows: Vec<[String; 6]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.label.clone(),
                    f.unit.format(f.value),
                    f.reference.as_ref().map_or("-".into(), |r| {
                        format!("{} {}", r.label, f.unit.format(r.value))
                    }),
                    f.ratio_text(),
                    f.goal_text(),
                    match f.met() {
                        None => "".into(),
                        Some(true) => "yes".into(),
                        Some(false) => "NO".into(),
                    },
                ]
            })
            .collect();
        let mut width = head.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (c, w) in cells.iter().zip(width) {
                s.push_str(&format!(" {c:<w$} |"));
            }
            s.push('\n');
            s
        };
        out.push_str(&line(&head.map(String::from)));
        let sep: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&sep));
        for r in &rows {
            out.push_str(&line(r));
        }
        for (scenario, err) in &self.failures {
            out.push_str(&format!("\nscenario {scenario} FAILED: {err}\n"));
        }
        out.push_str(&format!(
            "\nAll goals met: {}\n",
            if self.all_goals_met() { "yes" } else { "no" }
        ));
        out
    }

    pub fn json(&self) -> Value {
        let header: Map<String, Value> = self
            .header
            .iter()
            .map(|(k, v)| (k.to_lowercase().replace(' ', "_"), Value::from(v.clone())))
            .collect();
        let figures: Map<String, Value> = self
            .figures
            .iter()
            .map(|f| {
                let goal = f.goal.map(|g| {
                    json!({
                        "at_least": g.at_least,
                        "below": g.below,
                        "at_most": g.at_most,
                        "ratio_at_least": g.ratio_at_least,
                    })
                });
                let v = json!({
                    "label": f.label,
                    "value": finite(f.value),
                    "unit": f.unit.as_str(),
                    "reference": f.reference.as_ref().map(|r| json!({"label": r.label, "value": finite(r.value)})),
                    "ratio": f.ratio().map(finite),
                    "goal": goal,
                    "met": f.met(),
                    "details": f.details,
                });
                (f.key.to_owned(), v)
            })
            .collect();
        let failures: Map<String, Value> = self
            .failures
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        json!({
            "run": header,
            "figures": figures,
            "failed_scenarios": failures,
            "all_goals_met": self.all_goals_met(),
        })
    }
}

fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}
