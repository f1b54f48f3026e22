"""The exit codes of every redblue command, in one place."""

EXIT_OK = 0
EXIT_FAILED = 1  # the work itself failed (training diverged, a job failed, no trial finished)
EXIT_INVALID = 2  # bad input (config, data, model URI, key, file): refused before Ray starts
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGTERM, or a stopped Ray job
