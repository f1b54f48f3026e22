"""``redblue submit`` and ``redblue cluster``: Ray Jobs submission, a local multi-node cluster."""
