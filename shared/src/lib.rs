//! The one crate every Stories From the Sun function uses.

pub mod db;
