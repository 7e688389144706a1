pub mod preload;
pub mod session;
pub mod shells;
