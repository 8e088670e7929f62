//! Latency samples and what is reported of them.

use std::time::Duration;

/// The latencies of one run and how long it took.
pub struct Latencies {
    sorted: Vec<Duration>,
    elapsed: Duration,
}

impl Latencies {
    pub fn new(mut samples: Vec<Duration>, elapsed: Duration) -> Self {
        samples.sort_unstable();
        Latencies {
            sorted: samples,
            elapsed,
        }
    }

    /// The `p`-th percentile (0 < p ≤ 100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn per_second(&self) -> f64 {
        self.sorted.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Milliseconds with two decimals, as the report shows them.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Times `f` `runs` times in a row (after a tenth as many warm-up runs).
pub async fn sequential<F: AsyncFnMut() -> anyhow::Result<()>>(
    runs: usize,
    mut f: F,
) -> anyhow::Result<Latencies> {
    for _ in 0..runs / 10 {
        f().await?;
    }
    let started = std::time::Instant::now();
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = std::time::Instant::now();
        f().await?;
        samples.push(t.elapsed());
    }
    Ok(Latencies::new(samples, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let l = Latencies::new(samples, Duration::from_secs(1));
        assert_eq!(l.percentile(50.0), Duration::from_millis(50));
        assert_eq!(l.percentile(99.0), Duration::from_millis(99));
        assert_eq!(l.percentile(100.0), Duration::from_millis(100));
        assert_eq!(l.per_second(), 100.0);
    }
}
