//! The resource plan: every deployment's replicas times what each reserves, against what the
//! node has, placed replica by replica with a [`Scheduler`] so that fragmented GPUs show too. It
//! prints the "Resource Planning" table RayAI prints before serving.

use std::fmt;

use super::resources::{NodeResources, Resources};
use super::scheduler::{EPSILON, Scheduler, Shortfall, amount, check_request, short, whole_gpus};
use crate::memory::format_memory;

/// How an application is placed when not all of its replicas fit on the node now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Placement {
    /// Start what fits, as Ray Serve does: every deployment's minimum (1 replica, or
    /// `min_replicas` under autoscaling) must fit; the replicas beyond it that do not fit wait as
    /// pending and start when resources free up.
    #[default]
    StartWhatFits,
    /// Refuse the application unless every replica it asks for fits now.
    Strict,
}

/// One deployment in a [`Plan`]: how many replicas, and what each reserves.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow {
    /// The deployment's name.
    pub deployment: String,
    /// How many replicas it runs.
    pub replicas: u32,
    /// What each replica reserves.
    pub per_replica: Resources,
}

impl PlanRow {
    /// A row for `replicas` replicas of `deployment`, each reserving `per_replica`.
    pub fn new(deployment: impl Into<String>, replicas: u32, per_replica: Resources) -> Self {
        PlanRow {
            deployment: deployment.into(),
            replicas,
            per_replica,
        }
    }

    /// What all of its replicas reserve together.
    pub fn total(&self) -> Resources {
        let n = self.replicas;
        Resources {
            num_cpus: f64::from(n) * self.per_replica.num_cpus,
            num_gpus: f64::from(n) * self.per_replica.num_gpus,
            memory_bytes: self.per_replica.memory_bytes.saturating_mul(u64::from(n)),
        }
    }
}

/// The resources an application needs against what the node has, checked before serving: the
/// "Resource Planning" table.
///
/// Totals are compared with the node's; every GPU replica is also placed as the scheduler would
/// place it, which catches fragmentation (three 0.6-GPU replicas do not fit on two GPUs, though
/// 1.8 < 2).
///
/// # Examples
///
/// ```
/// use rayai_core::{NodeResources, Plan, PlanRow, Resources};
///
/// let small = Resources { num_cpus: 0.25, num_gpus: 0.0, memory_bytes: 64 << 20 };
/// let llm = Resources { num_cpus: 1.0, num_gpus: 1.0, memory_bytes: 8 << 30 };
/// let plan = Plan::new(
///     NodeResources::new(2.0, 16 << 30).with_gpus(1),
///     vec![PlanRow::new("echo", 4, small), PlanRow::new("llm", 2, llm)],
/// );
/// assert!(!plan.fits());
/// assert!(plan.shortages().iter().any(|s| s == "CPUs: need 3.0, node has 2.0"));
/// println!("{plan}");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    rows: Vec<PlanRow>,
    node: NodeResources,
    total: Resources,
    shortages: Vec<String>,
}

impl Plan {
    /// Checks `rows` against `node`: sums the totals and places every GPU replica.
    pub fn new(node: NodeResources, rows: Vec<PlanRow>) -> Self {
        let mut total = Resources {
            num_cpus: 0.0,
            num_gpus: 0.0,
            memory_bytes: 0,
        };
        for row in &rows {
            let row_total = row.total();
            total.num_cpus += row_total.num_cpus;
            total.num_gpus += row_total.num_gpus;
            total.memory_bytes = total.memory_bytes.saturating_add(row_total.memory_bytes);
        }

        let mut shortages = Vec::new();
        if total.num_cpus > node.num_cpus + EPSILON {
            shortages.push(format!(
                "CPUs: need {}, node has {}",
                amount(total.num_cpus),
                amount(node.num_cpus)
            ));
        }
        if total.memory_bytes > node.memory_bytes {
            shortages.push(format!(
                "Memory: need {}, node has {}",
                format_memory(total.memory_bytes),
                format_memory(node.memory_bytes)
            ));
        }
        if total.num_gpus > node.num_gpus() as f64 + EPSILON {
            shortages.push(format!(
                "GPUs: need {}, node has {}",
                amount(total.num_gpus),
                node.num_gpus()
            ));
        }

        // Place the GPUs replica by replica; CPUs and memory are fungible, their totals suffice.
        let mut scheduler = Scheduler::new(node.clone());
        for row in rows.iter().filter(|row| row.replicas > 0) {
            if let Err(invalid) = check_request(&row.per_replica) {
                shortages.push(format!("deployment `{}`: {invalid}", row.deployment));
                continue;
            }
            let num_gpus = row.per_replica.num_gpus;
            if num_gpus == 0.0 {
                continue;
            }
            let gpus_only = Resources {
                num_cpus: 0.0,
                num_gpus,
                memory_bytes: 0,
            };
            for replica in 1..=row.replicas {
                if let Err(shortfall) = scheduler.reserve(&row.deployment, &gpus_only) {
                    let what = match (whole_gpus(num_gpus), shortfall) {
                        (Some(1), _) => "no free GPU".to_owned(),
                        (Some(n), Shortfall::Gpus { free, .. }) => {
                            format!("only {} of the {n} free GPUs it needs", short(free))
                        }
                        _ => format!("no GPU with {} free", amount(num_gpus)),
                    };
                    shortages.push(format!(
                        "GPUs: deployment `{}` replica {replica} of {} found {what}",
                        row.deployment, row.replicas
                    ));
                    break;
                }
            }
        }

        Plan {
            rows,
            node,
            total,
            shortages,
        }
    }

    /// The deployments, as given.
    pub fn rows(&self) -> &[PlanRow] {
        &self.rows
    }

    /// The node they were checked against.
    pub fn node(&self) -> &NodeResources {
        &self.node
    }

    /// What all replicas of all rows reserve together.
    pub fn total(&self) -> Resources {
        self.total
    }

    /// Whether every replica fits on the node.
    pub fn fits(&self) -> bool {
        self.shortages.is_empty()
    }

    /// What does not fit, one sentence each: `CPUs: need 6.0, node has 2.0`, or
    /// ``GPUs: deployment `llm` replica 2 of 2 found no free GPU``. Empty when the plan fits.
    pub fn shortages(&self) -> &[String] {
        &self.shortages
    }
}

impl fmt::Display for Plan {
    /// The table, then `fits` or `does not fit: <shortages>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEADER: [&str; 8] = [
            "Agent",
            "Replicas",
            "CPUs/rep",
            "GPUs/rep",
            "Memory/rep",
            "Total CPUs",
            "Total GPUs",
            "Total memory",
        ];
        let mut table: Vec<[String; 8]> = vec![HEADER.map(str::to_owned)];
        for row in &self.rows {
            let total = row.total();
            table.push([
                row.deployment.clone(),
                row.replicas.to_string(),
                short(row.per_replica.num_cpus),
                short(row.per_replica.num_gpus),
                format_memory(row.per_replica.memory_bytes),
                format!("{:.2}", total.num_cpus),
                short(total.num_gpus),
                format_memory(total.memory_bytes),
            ]);
        }
        let summary = |label: &str, cpus: f64, gpus: String, memory: String| {
            let blank = String::new;
            [
                label.to_owned(),
                blank(),
                blank(),
                blank(),
                blank(),
                format!("{cpus:.2}"),
                gpus,
                memory,
            ]
        };
        table.push(summary(
            "Total",
            self.total.num_cpus,
            short(self.total.num_gpus),
            format_memory(self.total.memory_bytes),
        ));
        let node_memory = match self.node.memory_bytes {
            u64::MAX => "unknown".to_owned(),
            bytes => format_memory(bytes),
        };
        table.push(summary(
            "Node",
            self.node.num_cpus,
            self.node.num_gpus().to_string(),
            node_memory,
        ));

        let mut widths = [0; 8];
        for line in &table {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        writeln!(f, "Resource Planning")?;
        for line in &table {
            write!(f, "{:<w$}", line[0], w = widths[0])?;
            for (cell, &w) in line.iter().zip(&widths).skip(1) {
                write!(f, "  {cell:>w$}")?;
            }
            writeln!(f)?;
        }
        if self.fits() {
            write!(f, "fits")
        } else {
            write!(f, "does not fit: {}", self.shortages.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn req(num_cpus: f64, num_gpus: f64, memory_bytes: u64) -> Resources {
        Resources {
            num_cpus,
            num_gpus,
            memory_bytes,
        }
    }

    fn node(cpus: f64, gpus: u32) -> NodeResources {
        NodeResources::new(cpus, 16 * GIB).with_gpus(gpus)
    }

    fn sample_plan() -> Plan {
        Plan::new(
            NodeResources::new(2.0, 16 * GIB),
            vec![
                PlanRow::new("echo", 4, req(0.25, 0.0, 64 << 20)),
                PlanRow::new("a-much-longer-agent-name", 1, req(0.15, 0.0, GIB)),
            ],
        )
    }

    #[test]
    fn plan_that_fits_prints_every_row_and_the_totals() {
        let plan = sample_plan();
        assert!(plan.fits(), "{plan}");
        assert!(plan.shortages().is_empty());
        assert_eq!(plan.total().memory_bytes, GIB + (256 << 20));
        let text = plan.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Resource Planning");
        assert!(lines[1].starts_with("Agent "), "{text}");
        assert!(lines[2].starts_with("echo "), "{text}");
        for cell in ["4", "0.25", "64.0MiB", "1.00", "256.0MiB"] {
            assert!(
                lines[2].split_whitespace().any(|c| c == cell),
                "{cell}: {text}"
            );
        }
        assert!(lines[3].starts_with("a-much-longer-agent-name  "), "{text}");
        assert!(
            lines[4].starts_with("Total ") && lines[4].contains("1.15"),
            "{text}"
        );
        assert!(
            lines[5].starts_with("Node ") && lines[5].contains("2.00"),
            "{text}"
        );
        assert!(lines[5].ends_with("16.0GiB"), "{text}");
        assert_eq!(lines[6], "fits");
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn plan_columns_align_whatever_the_names() {
        let text = sample_plan().to_string();
        let table: Vec<&str> = text.lines().skip(1).take(5).collect();
        // Every line of the table is as wide, and the numeric columns end at the same place.
        assert!(table.iter().all(|l| l.len() == table[0].len()), "{text}");
        let end_of_replicas = table[0].find("Replicas").unwrap() + "Replicas".len();
        assert_eq!(table[1].as_bytes()[end_of_replicas - 1], b'4', "{text}");
        assert_eq!(table[2].as_bytes()[end_of_replicas - 1], b'1', "{text}");
    }

    #[test]
    fn plan_short_of_cpus_and_memory_says_what_and_how_much() {
        let plan = Plan::new(
            NodeResources::new(2.0, 4 * GIB),
            vec![PlanRow::new("heavy", 3, req(2.0, 0.0, 2 * GIB))],
        );
        assert!(!plan.fits());
        assert_eq!(
            plan.shortages(),
            [
                "CPUs: need 6.0, node has 2.0",
                "Memory: need 6.0GiB, node has 4.0GiB"
            ]
        );
        let text = plan.to_string();
        assert!(text.contains("heavy"), "{text}");
        assert!(
            text.ends_with(
                "does not fit: CPUs: need 6.0, node has 2.0; Memory: need 6.0GiB, node has 4.0GiB"
            ),
            "{text}"
        );
    }

    #[test]
    fn plan_short_of_gpus_names_the_replica_that_found_none() {
        let plan = Plan::new(
            node(8.0, 1),
            vec![PlanRow::new("llm", 2, req(1.0, 1.0, GIB))],
        );
        assert_eq!(
            plan.shortages(),
            [
                "GPUs: need 2.0, node has 1",
                "GPUs: deployment `llm` replica 2 of 2 found no free GPU"
            ]
        );
        let plan = Plan::new(
            node(8.0, 3),
            vec![PlanRow::new("big", 2, req(1.0, 2.0, GIB))],
        );
        assert_eq!(
            plan.shortages(),
            [
                "GPUs: need 4.0, node has 3",
                "GPUs: deployment `big` replica 2 of 2 found only 1 of the 2 free GPUs it needs"
            ]
        );
    }

    #[test]
    fn plan_catches_fragmented_gpus_the_totals_miss() {
        let plan = Plan::new(
            node(8.0, 2),
            vec![PlanRow::new("vision", 3, req(1.0, 0.6, GIB))],
        );
        assert_eq!(plan.total().num_gpus, 0.6 * 3.0);
        assert_eq!(
            plan.shortages(),
            ["GPUs: deployment `vision` replica 3 of 3 found no GPU with 0.6 free"]
        );
        let plan = Plan::new(
            node(8.0, 2),
            vec![
                PlanRow::new("a", 2, req(1.0, 0.5, GIB)),
                PlanRow::new("b", 1, req(1.0, 1.0, GIB)),
            ],
        );
        assert!(plan.fits(), "{plan}");
    }

    #[test]
    fn plan_reports_an_invalid_gpu_request() {
        let plan = Plan::new(
            node(8.0, 4),
            vec![PlanRow::new("llm", 1, req(1.0, 1.5, GIB))],
        );
        assert_eq!(plan.shortages().len(), 1, "{plan}");
        assert!(
            plan.shortages()[0].starts_with("deployment `llm`: num_gpus = 1.5 is not valid"),
            "{plan}"
        );
    }

    #[test]
    fn plan_of_eight_quarter_cpus_fits_two() {
        let plan = Plan::new(
            node(2.0, 0),
            vec![PlanRow::new("echo", 8, req(0.25, 0.0, 0))],
        );
        assert!(plan.fits(), "{plan}");
    }

    #[test]
    fn shortfall_numbers_are_rounded_for_reading() {
        let err = Shortfall::Cpus {
            needed: 0.1,
            free: 0.30000000000000004 - 0.3,
            total: 0.3,
        };
        assert_eq!(err.to_string(), "needs 0.1 CPU but 0.0 of 0.3 are free");
    }
}
