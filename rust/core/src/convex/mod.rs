//! Activation patterns, ADMM (exact/approximate), sampled convex programs (convex training issue).
