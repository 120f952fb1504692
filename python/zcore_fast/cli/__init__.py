"""`zcore-fast`: score embeddings and select coresets from the command line.

One module per command family: `main.py` (the parser, `select`, `score`),
`methods.py` (the selection methods' flags), `cache.py` (`cache`),
`embed.py` (`embed`), `evaluate.py` (`evaluate`, `plot`), and the shared
`usage.py` (usage errors, flag types) and `table.py` (result tables).

Exit status: 0 success, 1 runtime error, 2 usage error, 130 interrupted.
"""

from zcore_fast.cli.main import main

__all__ = ["main"]
