//! The message format, version 2 (to be implemented).
