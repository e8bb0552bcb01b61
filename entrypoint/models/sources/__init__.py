"""Where a model's bytes come from: a local path (used in place), an http(s) URL, or the hub."""
