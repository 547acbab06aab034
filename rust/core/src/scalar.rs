//! The two floating-point types the forward pass runs in (float64 and float32, as numpy hands them over).

use faer::traits::RealField;

pub trait Real: RealField + Copy + Send + Sync + PartialOrd + 'static {
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn zero_() -> Self;
    fn one_() -> Self;
    fn tanh_(self) -> Self;
    fn exp_(self) -> Self;
    fn finite(self) -> bool;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn zero_() -> Self {
                0.0
            }
            #[inline(always)]
            fn one_() -> Self {
                1.0
            }
            #[inline(always)]
            fn tanh_(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn exp_(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);
