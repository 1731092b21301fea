"""The click CLI, kubectl-shaped: one module per verb group."""
