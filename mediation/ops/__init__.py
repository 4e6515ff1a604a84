"""Operator tools: status and triggers, the go/no-go gate, alert checks, peak and soak
reports, and the publish worker. Built on the kernel and the IO packages; nothing
below this floor imports it."""
