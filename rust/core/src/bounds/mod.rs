//! Bound propagation (interval, linear/CROWN-style) and the branch-and-bound queue (verification issue).
