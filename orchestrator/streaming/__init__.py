"""Streaming a table into the workers with Ray Data (``data.streaming``): whether to stream
(:mod:`.choice`), the statistics pass that plans the run (:mod:`.plan`), and the stream each
worker reads its shard of a part from (:mod:`.rows`)."""
