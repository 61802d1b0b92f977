//! The grants end to end, over an in-memory store with a test clock.

mod code;
mod device;
mod refresh;
mod resource;
