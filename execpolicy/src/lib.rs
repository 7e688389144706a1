//! The Starlark `.rules` policy language: load rule files, validate their examples, and
//! evaluate a command to allow / prompt / forbidden with the rules that matched.
//!
//! Pure library: no I/O beyond reading rule files.
