//! The statements __NAME__ sends (the membership check is the shared one).
