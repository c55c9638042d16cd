"""Private helpers that several packages need: capture, eval modes, checks, ids, atomic io, condensed<->square,
image-file helpers (brain/ needs them too) and lazy package faces."""
