//! Learning rate and alpha schedules. The learning rate follows HF's (and verl's)
//! `get_cosine_schedule_with_warmup`: linear warmup from 0, then half a cosine down to
//! `min_ratio` of the peak.

/// Learning rate at optimizer step `step` (0-based) of `total`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub min_ratio: f64,
}

impl CosineSchedule {
    /// `warmup_ratio` of `total_steps` warming up (the paper's runs: 10%).
    pub fn new(peak: f64, total_steps: usize, warmup_ratio: f64, min_ratio: f64) -> Self {
        let warmup_steps = ((total_steps as f64) * warmup_ratio) as usize;
        CosineSchedule {
            peak,
            warmup_steps,
            total_steps,
            min_ratio,
        }
    }

    pub fn lr(&self, step: usize) -> f64 {
        let factor = if step < self.warmup_steps {
            step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
            let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            self.min_ratio + (1.0 - self.min_ratio) * cosine
        };
        self.peak * factor
    }
}

/// Alpha moved linearly from `from` at the first step to `to` at the last
/// (`--alpha-schedule FROM:TO`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlphaSchedule {
    pub from: f32,
    pub to: f32,
}

impl AlphaSchedule {
    pub fn at(&self, step: usize, total_steps: usize) -> f32 {
        if total_steps <= 1 {
            return self.from;
        }
        let t = step.min(total_steps - 1) as f32 / (total_steps - 1) as f32;
        self.from + (self.to - self.from) * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = CosineSchedule::new(1e-3, 100, 0.1, 0.0);
        assert_eq!(s.warmup_steps, 10);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-4).abs() < 1e-15);
        assert!((s.lr(10) - 1e-3).abs() < 1e-15);
        assert!((s.lr(55) - 5e-4).abs() < 1e-12);
        assert!(s.lr(99) > 0.0 && s.lr(99) < 1e-5);
        assert!(s.lr(100).abs() < 1e-15);
        let floor = CosineSchedule::new(1.0, 10, 0.0, 0.1);
        assert!((floor.lr(10) - 0.1).abs() < 1e-12);
        assert_eq!(floor.lr(0), 1.0);
    }

    #[test]
    fn alpha_moves_linearly() {
        let a = AlphaSchedule { from: 0.0, to: 1.0 };
        assert_eq!(a.at(0, 11), 0.0);
        assert!((a.at(5, 11) - 0.5).abs() < 1e-6);
        assert_eq!(a.at(10, 11), 1.0);
        assert_eq!(a.at(50, 11), 1.0);
        assert_eq!(a.at(0, 1), 0.0);
    }
}
