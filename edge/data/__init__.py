"""Real-format loaders (``edge.data.loaders``) and Parquet dataset shards (``edge.data.shards``).

``edge.data.shards`` needs pyarrow (the ``data`` extra); it is imported on use, not here.
"""

from edge.data.loaders import LOADERS, LoaderError, MeterSeries, load

__all__ = ["LOADERS", "LoaderError", "MeterSeries", "load"]
