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
    # onnxruntime (the int8 embedder) sends usage events to Microsoft from version 1.29 on
    # Linux too; this is its documented off switch, read once at its start.
    "ORT_DISABLE_TELEMETRY": "1",
}


def go_offline() -> None:
    """Set the offline/telemetry switches of every library kbqa may load."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # A user cannot opt back into hub look-ups or telemetry by accident: these must hold.
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ORT_DISABLE_TELEMETRY"):
        os.environ[key] = OFFLINE_ENV[key]
