"""The numpy and pandas type handlers (imported only when those packages are wanted).

JSON forms: an array is ``{"dtype", "shape", "data"}`` (nested lists); a DataFrame is
pandas' ``split`` form (``columns``, ``index``, ``data``) plus its ``dtypes``. Bytes: an
array is ``.npy`` (``allow_pickle=False``); a DataFrame is Parquet when pyarrow is
installed, else pandas' ``table`` JSON (which keeps the dtypes). Never pickle: a record
or a cache entry read back must not run code.
"""

from __future__ import annotations

import io
import json
from typing import Any

from constellation.core.handlers import TypeHandler

__all__ = ["numpy_handler", "pandas_handler"]


def numpy_handler() -> TypeHandler:
    """``Array``: ``numpy.ndarray`` (object arrays are refused: they would need pickle)."""
    import numpy as np

    def check(value: Any) -> Any:
        if not isinstance(value, np.ndarray):
            raise TypeError("not a numpy.ndarray")
        if value.dtype == object:
            raise TypeError("object arrays are not supported (they need pickle)")
        return value

    def to_json(value: Any) -> Any:
        return {"dtype": value.dtype.str, "shape": list(value.shape),
                "data": value.tolist()}

    def from_json(data: Any) -> Any:
        if not (isinstance(data, dict) and {"dtype", "shape", "data"} <= set(data)):
            raise TypeError('an {"dtype", "shape", "data"} object is expected')
        return np.asarray(data["data"], dtype=np.dtype(data["dtype"])).reshape(data["shape"])

    def to_bytes(value: Any) -> bytes:
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return buf.getvalue()

    def from_bytes(data: bytes) -> Any:
        return np.load(io.BytesIO(data), allow_pickle=False)

    return TypeHandler("Array", np.ndarray, check, to_json, from_json, to_bytes, from_bytes,
                       zero=lambda: np.zeros(0),
                       can_handle=lambda t: t is np.ndarray or getattr(
                           t, "__origin__", None) is np.ndarray)


def pandas_handler() -> TypeHandler:
    """``DataFrame``: ``pandas.DataFrame``."""
    import pandas as pd

    def check(value: Any) -> Any:
        if not isinstance(value, pd.DataFrame):
            raise TypeError("not a pandas.DataFrame")
        return value

    def to_json(value: Any) -> Any:
        body = json.loads(value.to_json(orient="split", date_format="iso"))
        body["dtypes"] = {str(c): str(t) for c, t in value.dtypes.items()}
        return body

    def from_json(data: Any) -> Any:
        if not (isinstance(data, dict) and {"columns", "data"} <= set(data)):
            raise TypeError('a {"columns", "index", "data"} object is expected')
        frame = pd.DataFrame(data["data"], columns=data["columns"],
                             index=data.get("index"))
        dtypes = data.get("dtypes")
        if isinstance(dtypes, dict):
            frame = frame.astype({c: t for c, t in dtypes.items() if c in frame.columns})
        return frame

    def to_bytes(value: Any) -> bytes:
        try:
            buf = io.BytesIO()
            value.to_parquet(buf)  # a Parquet file starts with b"PAR1"
            return buf.getvalue()
        except ImportError:  # no pyarrow/fastparquet: the table JSON keeps the dtypes
            text: str = value.to_json(orient="table")
            return text.encode()

    def from_bytes(data: bytes) -> Any:
        if data.startswith(b"PAR1"):
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_json(io.StringIO(data.decode()), orient="table")

    return TypeHandler("DataFrame", pd.DataFrame, check, to_json, from_json, to_bytes,
                       from_bytes, zero=pd.DataFrame,
                       can_handle=lambda t: isinstance(t, type) and issubclass(
                           t, pd.DataFrame))
