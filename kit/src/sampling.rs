//! Token sampling: temperature, top-k, top-p, repetition penalty, seeded.
