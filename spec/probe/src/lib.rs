//! Probe filter for the Kong stand-in tests.
