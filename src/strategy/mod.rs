//! Strategies and what they are built from. So far: the streaming [`indicators`].

pub mod indicators;
