"""Lightning-side pieces shared by the tasks (callbacks, overlay logging)."""
