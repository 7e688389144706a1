//! What the user trusts, and whether it is still what they trusted (design invariants 3
//! and 4): project policy layers (`.execgate/` rules, hooks and hook scripts) and git
//! repositories (config, included files, hooks), recorded by `execgate trust` as digests in
//! the user's trust file.
//!
//! - [`git`]: which repository a program started in a folder would use, found from an
//!   open directory as git finds it.
//! - [`config`]: the files a git config names (includes, hooks folder).
//! - [`repository`]: the files trusting a repository covers, and their digest.
//! - [`digest`]: the digest of a set of files.
//! - [`store`]: the trust file (locked writes).
//! - [`session`]: trusted repositories for one session: what to keep read-only, what
//!   counts.
//!
//! Nothing here runs git or any other program, and nothing is trusted by default: a
//! repository or policy layer the trust file does not name, or whose digest changed, is
//! untrusted.

#![deny(missing_docs)]

pub mod config;
pub mod digest;
pub mod git;
pub mod repository;
pub mod session;
pub mod store;

pub use digest::Fingerprint;
pub use repository::{RepositoryError, RepositoryFiles};
pub use session::{TrustedRepositories, Verified};
pub use store::{Recorded, RecordedRepository, TrustError, TrustStore, Trusted};
