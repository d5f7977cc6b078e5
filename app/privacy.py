"""Switch off every library's network use before any of them is imported.

kbqa promises that no byte leaves the machine: hub look-ups, telemetry and usage statistics
are disabled here, once, at package import. Values the user set explicitly are kept.
"""

from __future__ import annotations

import os

OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "STREAMLIT_SERVER_HEADLESS": "true",
    "TOKENIZERS_PARALLELISM": "false",
}


def go_offline() -> None:
    """Set the offline/telemetry switches of every library kbqa may load."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # A user cannot opt back into hub look-ups by accident: these two must hold.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
