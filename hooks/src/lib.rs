//! hooks.json discovery and the `PermissionRequest` event: run the matching command
//! handlers, parse their output and fold their decisions.
