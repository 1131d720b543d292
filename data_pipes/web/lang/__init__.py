"""Per-language settings of the web heuristics: language figures (`table.py`), scripts and the fallback for
unknown languages (`scripts.py`), word segmenters for scripts written without spaces (`segmenters.py`), and
the resolution of one language's rules from the node's params (`rules.py`)."""
