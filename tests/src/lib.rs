//! Fixture paths for integration tests.
