"""Running planned steps through ansible-runner and reading back what happened."""
