//! Benchmarks (`bench`) and the chaos soak (`soak`): the real engine, API and store against
//! the emulator and a real Postgres, each printing a table and writing JSON (issue 6).
pub mod bench;
pub mod rig;
pub mod soak;
