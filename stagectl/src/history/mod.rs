//! Run history (SQLite). Being written.
