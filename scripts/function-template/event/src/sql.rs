//! The statements __NAME__ sends.
