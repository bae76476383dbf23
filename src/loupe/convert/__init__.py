"""Official checkpoint layouts -> Loupe state dicts: one module per method, each a key map kept as data
(a list of ``(regex, replacement)`` rules) plus a strict loader that names every missing or unexpected key."""
