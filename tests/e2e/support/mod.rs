pub mod preload;
pub mod report;
pub mod session;
pub mod shells;
