"""diag."""
