//! execgate's end-to-end tests, as one test binary: real shells, the real wrapper and shim,
//! the real sandbox, the real `execgate` binary.
//!
//! One module per area; `support` holds every helper they share.

mod direct_execs;
mod escalation;
mod hardening;
mod hooks;
mod install;
mod mcp;
mod mcp_clients;
mod network;
mod patched_shells;
mod policy;
mod policy_authoring;
mod preload;
mod run;
mod sandbox;
mod support;
mod terminal;
mod trust;
