//! The hooks seam: how the pipeline asks `PermissionRequest` hooks. Sessions use the
//! loaded hooks.json files through a [`HookRunner`] (a few hook processes at a time, one
//! run for identical pending requests); tests script the answer.

use crate::approver::BoxFuture;
use execgate_hooks::{HookRunner, HooksConfig, PermissionOutcome, PermissionRequest};

/// Whoever answers `PermissionRequest` events.
pub trait PermissionHooks: Send + Sync {
    /// Runs the event for one command and folds the answers (no decision when no hook
    /// decided).
    fn permission_request<'a>(
        &'a self,
        request: &'a PermissionRequest,
    ) -> BoxFuture<'a, PermissionOutcome>;
}

impl PermissionHooks for HooksConfig {
    fn permission_request<'a>(
        &'a self,
        request: &'a PermissionRequest,
    ) -> BoxFuture<'a, PermissionOutcome> {
        Box::pin(HooksConfig::permission_request(self, request))
    }
}

impl PermissionHooks for HookRunner {
    fn permission_request<'a>(
        &'a self,
        request: &'a PermissionRequest,
    ) -> BoxFuture<'a, PermissionOutcome> {
        Box::pin(HookRunner::permission_request(self, request))
    }
}
