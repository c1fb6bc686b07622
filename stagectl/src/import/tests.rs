//! Unit tests of the pure conversion pieces.
