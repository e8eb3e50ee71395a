//! Dynamic loss scaling for f16 mixed precision (as torch.amp.GradScaler): the loss is
//! multiplied by a large scale before backward, so that small gradients survive the f16
//! rounding in the matmul backward, and the gradients are divided by it before the optimizer
//! step. A step whose gradients overflowed (a non-finite norm) is skipped and the scale
//! halved; after `growth_interval` good steps in a row it doubles.

#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    scale: f32,
    /// Good steps since the last change of scale.
    good_steps: u32,
    growth_interval: u32,
    enabled: bool,
}

impl LossScaler {
    /// GradScaler's defaults: 2^16, doubling after 2000 good steps; `enabled = false` keeps the
    /// scale at 1 (f32 training needs none).
    pub fn new(enabled: bool) -> LossScaler {
        LossScaler {
            scale: if enabled { 65536.0 } else { 1.0 },
            good_steps: 0,
            growth_interval: 2000,
            enabled,
        }
    }

    /// Start from `scale` instead of 2^16 (when enabled).
    pub fn with_initial(mut self, scale: f32) -> LossScaler {
        if self.enabled {
            self.scale = scale;
        }
        self
    }

    pub fn scale(&self) -> f32 {
        self.scale
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// After a step: `finite` says whether its gradients were.
    pub fn update(&mut self, finite: bool) {
        if !self.enabled {
            return;
        }
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale = (self.scale * 2.0).min(f32::MAX / 4.0);
                self.good_steps = 0;
            }
        } else {
            // Never below 1: then f16 gradients are what they are.
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
        }
    }

    /// (scale, good steps) for a checkpoint.
    pub fn state(&self) -> (f32, u32) {
        (self.scale, self.good_steps)
    }

    /// Restore what [`LossScaler::state`] gave.
    pub fn restore(&mut self, scale: f32, good_steps: u32) {
        if self.enabled && scale.is_finite() && scale >= 1.0 {
            self.scale = scale;
            self.good_steps = good_steps;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_on_overflow_and_grows_after_good_steps() {
        let mut s = LossScaler::new(true);
        assert_eq!(s.scale(), 65536.0);
        s.update(false);
        s.update(false);
        assert_eq!(s.scale(), 16384.0);
        for _ in 0..1999 {
            s.update(true);
        }
        assert_eq!(s.scale(), 16384.0);
        s.update(true);
        assert_eq!(s.scale(), 32768.0);
        for _ in 0..40 {
            s.update(false);
        }
        assert_eq!(s.scale(), 1.0);
        let mut off = LossScaler::new(false);
        off.update(false);
        assert_eq!(off.scale(), 1.0);
    }
}
