//! Datasets: TRL formats, loading with file:line errors, validators and generators.
