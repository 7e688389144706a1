//! The escalation server: session setup (socket, environment, shell spawn), the server side
//! of the wire protocol, and execution of escalated commands outside the sandbox.
