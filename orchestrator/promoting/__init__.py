"""`redblue promote` and `redblue rollback`."""
