from __future__ import annotations

from pathlib import Path

import pytest
from kbqa.errors import SettingError
from kbqa.settings import DEFAULT_CHAT_MODEL_FILE, from_env


def test_environment_overrides() -> None:
    s = from_env({"KBQA_HOME": "/tmp/x", "KBQA_N_GPU_LAYERS": "-1", "KBQA_N_CTX": "2048",
                  "KBQA_THREADS": "3", "KBQA_MODEL": "/m/model.gguf", "KBQA_TOP_K": "7"})
    assert s.home == Path("/tmp/x")
    assert (s.n_gpu_layers, s.n_ctx, s.threads, s.top_k) == (-1, 2048, 3, 7)
    assert s.model_path == Path("/m/model.gguf")
    assert s.db_url == "sqlite:////tmp/x/kb.sqlite"


def test_defaults_point_at_the_packaged_model() -> None:
    s = from_env({})
    assert s.model_path.name == DEFAULT_CHAT_MODEL_FILE
    assert s.model_path.parent == s.models_dir


def test_keyword_beats_environment() -> None:
    assert from_env({"KBQA_TOP_K": "9"}, top_k=2).top_k == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KBQA_N_CTX": "big"}, "KBQA_N_CTX"),
        ({"KBQA_TOP_K": "0"}, "KBQA_TOP_K"),
        ({"KBQA_N_GPU_LAYERS": "-5"}, "KBQA_N_GPU_LAYERS"),
        ({"KBQA_CHUNK_TOKENS": "50", "KBQA_CHUNK_OVERLAP": "60"}, "KBQA_CHUNK_OVERLAP"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError, match=message):
        from_env(env)


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(SettingError, match="unknown setting"):
        from_env({}, colour="blue")
