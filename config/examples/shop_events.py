"""The shop mapper for config/examples/orders.yaml.

It lives with the example it belongs to, examples/orders/shop_events.py; this
module loads that file, so `path: "shop_events:order_events"` works from here too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "examples" / "orders" / "shop_events.py"
_spec = importlib.util.spec_from_file_location("_examples_orders_shop_events", _PATH)
if _spec is None or _spec.loader is None:
    raise ImportError(f"cannot load the shop mapper from {_PATH}")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

order_events = _module.order_events
