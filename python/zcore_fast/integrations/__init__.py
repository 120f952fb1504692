"""Bridges to the tools users keep their data in. Each module imports its
library (pyarrow, datasets, fiftyone) only when used, so the core never
needs them:

- `arrow.py`: Arrow list columns (pyarrow Tables, Parquet files and folders)
  as embedding matrices, and their id columns;
- `huggingface.py`: Hugging Face `datasets.Dataset`;
- `fiftyone.py`: FiftyOne datasets and views (`select_coreset`);
- `fiftyone_plugin/`: the FiftyOne App operator that wraps it (FiftyOne
  loads it from its plugins directory; it imports fiftyone).
"""
