//! What the node has: CPUs, memory and GPUs, as detected (see `detect`) or declared, with the
//! environment's overrides.

use crate::memory::parse_memory;

/// One GPU the node's replicas may use.
///
/// # Examples
///
/// ```
/// use rayai_core::Gpu;
///
/// let gpu = Gpu::new(0, "NVIDIA A100-SXM4-40GB");
/// assert_eq!(gpu.id, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// The index CUDA sees inside this process (after `CUDA_VISIBLE_DEVICES`).
    pub id: u32,
    /// The model name, as `nvidia-smi -L` prints it.
    pub name: String,
}

impl Gpu {
    /// A GPU with this CUDA index and name.
    pub fn new(id: u32, name: impl Into<String>) -> Self {
        Gpu {
            id,
            name: name.into(),
        }
    }
}

/// The CPUs, memory and GPUs of the node that replicas are placed on.
///
/// Build one by hand for tests and simulations, or [`detect`](NodeResources::detect) the real
/// machine.
///
/// # Examples
///
/// ```
/// use rayai_core::NodeResources;
///
/// let node = NodeResources::new(8.0, 32 << 30).with_gpus(2);
/// assert_eq!(node.num_gpus(), 2);
/// assert_eq!(node.gpus[1].name, "fake-gpu-1");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResources {
    /// CPUs (fractional under a cgroup quota: `1.5`).
    pub num_cpus: f64,
    /// Memory in bytes (`u64::MAX` when it could not be detected).
    pub memory_bytes: u64,
    /// The GPUs, in CUDA index order.
    pub gpus: Vec<Gpu>,
}

impl NodeResources {
    /// A node with these CPUs and this much memory, and no GPUs.
    pub fn new(num_cpus: f64, memory_bytes: u64) -> Self {
        NodeResources {
            num_cpus,
            memory_bytes,
            gpus: Vec::new(),
        }
    }

    /// Replaces the GPUs with a fake inventory of `n` devices, ids `0..n`, named `fake-gpu-<i>`.
    #[must_use]
    pub fn with_gpus(mut self, n: u32) -> Self {
        self.gpus = (0..n)
            .map(|i| Gpu::new(i, format!("fake-gpu-{i}")))
            .collect();
        self
    }

    /// Replaces the GPUs with this list.
    #[must_use]
    pub fn with_gpu_list(mut self, gpus: Vec<Gpu>) -> Self {
        self.gpus = gpus;
        self
    }

    /// The number of GPUs.
    pub fn num_gpus(&self) -> usize {
        self.gpus.len()
    }

    /// Applies the `RAYAI_*` overrides, reading variables through `lookup`.
    ///
    /// - `RAYAI_NUM_CPUS`: a number greater than 0, e.g. `4` or `1.5`.
    /// - `RAYAI_NUM_GPUS`: a whole number; replaces the GPUs with a fake inventory of that many
    ///   (see [`with_gpus`](NodeResources::with_gpus)).
    /// - `RAYAI_MEMORY`: a memory size such as `16GB` (see [`crate::memory::parse_memory`]).
    ///
    /// A variable that is unset or blank changes nothing; a bad value is ignored with a warning
    /// that names the variable. [`detect`](NodeResources::detect) calls this with the process
    /// environment; tests and tools pass any lookup they like.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayai_core::NodeResources;
    ///
    /// let env = |name: &str| match name {
    ///     "RAYAI_NUM_CPUS" => Some("2.5".to_owned()),
    ///     "RAYAI_NUM_GPUS" => Some("two".to_owned()), // ignored, with a warning
    ///     _ => None,
    /// };
    /// let node = NodeResources::new(16.0, 64 << 30).with_env_overrides(env);
    /// assert_eq!(node.num_cpus, 2.5);
    /// assert_eq!(node.num_gpus(), 0);
    /// ```
    #[must_use]
    pub fn with_env_overrides(self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let (node, problems) = self.apply_overrides(lookup);
        for problem in problems {
            tracing::warn!(variable = problem.variable, "{problem}");
        }
        node
    }

    /// [`with_env_overrides`](NodeResources::with_env_overrides) without the logging: the node,
    /// and the variables that were ignored.
    fn apply_overrides(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> (Self, Vec<BadOverride>) {
        let mut problems = Vec::new();
        if let Some(n) = parse_var(&lookup, "RAYAI_NUM_CPUS", parse_cpu_count, &mut problems) {
            self.num_cpus = n;
        }
        if let Some(n) = parse_var(&lookup, "RAYAI_NUM_GPUS", parse_gpu_count, &mut problems) {
            self = self.with_gpus(n);
        }
        let memory = |v: &str| parse_memory(v).map_err(|e| e.message().to_owned());
        if let Some(bytes) = parse_var(&lookup, "RAYAI_MEMORY", memory, &mut problems) {
            self.memory_bytes = bytes;
        }
        (self, problems)
    }
}
/// Reads one override variable: `None` if it is unset, blank or bad (then noted in `problems`).
fn parse_var<T>(
    lookup: impl Fn(&str) -> Option<String>,
    variable: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
    problems: &mut Vec<BadOverride>,
) -> Option<T> {
    let value = lookup(variable).filter(|v| !v.trim().is_empty())?;
    parse(value.trim())
        .map_err(|reason| {
            problems.push(BadOverride {
                variable,
                value,
                reason,
            })
        })
        .ok()
}

/// An override variable whose value was ignored.
#[derive(Debug)]
struct BadOverride {
    variable: &'static str,
    value: String,
    reason: String,
}

impl std::fmt::Display for BadOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ignoring {}={:?}: {}",
            self.variable, self.value, self.reason
        )
    }
}

fn parse_cpu_count(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err("expected a number of CPUs greater than 0, such as 4 or 1.5".to_owned()),
    }
}

pub(super) fn parse_gpu_count(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| "expected a whole number of GPUs, such as 0 or 2".to_owned())
}

/// Resources one replica reserves on the node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resources {
    /// CPUs (fractions allowed).
    pub num_cpus: f64,
    /// GPUs (fractions allowed: two replicas of 0.5 share a device).
    pub num_gpus: f64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

impl Default for Resources {
    /// RayAI's defaults: 1 CPU, no GPU, 2 GiB.
    fn default() -> Self {
        Resources {
            num_cpus: 1.0,
            num_gpus: 0.0,
            memory_bytes: 2 << 30,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn ids_and_names(gpus: &[Gpu]) -> Vec<(u32, &str)> {
        gpus.iter().map(|g| (g.id, g.name.as_str())).collect()
    }

    #[test]
    fn builds_fake_inventories() {
        let node = NodeResources::new(4.0, 8 << 30).with_gpus(3);
        assert_eq!(node.num_gpus(), 3);
        assert_eq!(node.gpus[2], Gpu::new(2, "fake-gpu-2"));
        let node = node.with_gpu_list(vec![Gpu::new(7, "x")]);
        assert_eq!(ids_and_names(&node.gpus), [(7, "x")]);
        assert_eq!(NodeResources::new(1.0, 0).num_gpus(), 0);
    }

    #[test]
    fn env_overrides_replace_detected_values() {
        let node = NodeResources::new(16.0, 64 << 30).with_gpus(8);
        let (node, problems) = node.apply_overrides(env(&[
            ("RAYAI_NUM_CPUS", "2.5"),
            ("RAYAI_NUM_GPUS", " 2 "),
            ("RAYAI_MEMORY", "4GB"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(node.num_cpus, 2.5);
        assert_eq!(
            ids_and_names(&node.gpus),
            [(0, "fake-gpu-0"), (1, "fake-gpu-1")]
        );
        assert_eq!(node.memory_bytes, 4 << 30);

        let (node, _) = node.apply_overrides(env(&[("RAYAI_NUM_GPUS", "0")]));
        assert_eq!(node.num_gpus(), 0);
    }

    #[test]
    fn unset_or_blank_overrides_change_nothing() {
        let before = NodeResources::new(16.0, 64 << 30).with_gpus(1);
        let (after, problems) = before.clone().apply_overrides(env(&[]));
        assert_eq!(after, before);
        assert!(problems.is_empty());
        let (after, problems) = before
            .clone()
            .apply_overrides(env(&[("RAYAI_NUM_CPUS", ""), ("RAYAI_MEMORY", "  ")]));
        assert_eq!(after, before);
        assert!(problems.is_empty());
    }

    #[test]
    fn bad_overrides_are_ignored_and_name_their_variable() {
        let before = NodeResources::new(16.0, 64 << 30).with_gpus(1);
        for (variable, value) in [
            ("RAYAI_NUM_CPUS", "many"),
            ("RAYAI_NUM_CPUS", "0"),
            ("RAYAI_NUM_CPUS", "-2"),
            ("RAYAI_NUM_CPUS", "NaN"),
            ("RAYAI_NUM_CPUS", "inf"),
            ("RAYAI_NUM_GPUS", "1.5"),
            ("RAYAI_NUM_GPUS", "-1"),
            ("RAYAI_MEMORY", "2 potatoes"),
            ("RAYAI_MEMORY", "1024"),
        ] {
            let (after, problems) = before.clone().apply_overrides(env(&[(variable, value)]));
            assert_eq!(after, before, "{variable}={value}");
            assert_eq!(problems.len(), 1, "{variable}={value}");
            let message = problems[0].to_string();
            assert!(message.contains(variable), "{message}");
            assert!(message.contains(value), "{message}");
        }
    }

    #[test]
    fn one_bad_override_does_not_block_the_others() {
        let (node, problems) = NodeResources::new(16.0, 64 << 30)
            .apply_overrides(env(&[("RAYAI_NUM_CPUS", "x"), ("RAYAI_MEMORY", "1GiB")]));
        assert_eq!(node.num_cpus, 16.0);
        assert_eq!(node.memory_bytes, 1 << 30);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().contains("RAYAI_NUM_CPUS"));
    }
}
