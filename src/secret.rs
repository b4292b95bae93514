//! Redacting secret type (being written).
