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


def test_the_second_reader_is_off_by_default_and_auto_only_for_its_model() -> None:
    assert not from_env({}).reads_twice  # measured: it costs right answers (README)
    assert from_env({"KBQA_SECOND_READER": "auto"}).reads_twice  # the calibrated model
    assert not from_env({"KBQA_MODEL": "/m/other.gguf",
                         "KBQA_SECOND_READER": "auto"}).reads_twice
    assert from_env({"KBQA_MODEL": "/m/other.gguf", "KBQA_SECOND_READER": "on"}).reads_twice
    assert not from_env({"KBQA_SECOND_READER": "off"}).reads_twice


def test_keyword_beats_environment() -> None:
    assert from_env({"KBQA_TOP_K": "9"}, top_k=2).top_k == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KBQA_N_CTX": "big"}, "KBQA_N_CTX"),
        ({"KBQA_TOP_K": "0"}, "KBQA_TOP_K"),
        ({"KBQA_N_GPU_LAYERS": "-5"}, "KBQA_N_GPU_LAYERS"),
        ({"KBQA_CHUNK_TOKENS": "50", "KBQA_CHUNK_OVERLAP": "60"}, "KBQA_CHUNK_OVERLAP"),
        ({"KBQA_SECOND_READER": "maybe"}, "KBQA_SECOND_READER"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError, match=message):
        from_env(env)


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(SettingError, match="unknown setting"):
        from_env({}, colour="blue")


def test_settings_saved_from_the_chat_apply_below_the_environment(tmp_path: Path) -> None:
    from kbqa.settings import save_settings, set_by_environment

    save_settings(tmp_path, {"top_k": "6", "temperature": 0.5, "answer_language": "zh"})
    home = {"KBQA_HOME": str(tmp_path)}
    s = from_env(home)
    assert (s.top_k, s.temperature, s.answer_language) == (6, 0.5, "zh")
    assert from_env({**home, "KBQA_TOP_K": "3"}).top_k == 3  # the environment wins
    assert from_env(home, top_k=2).top_k == 2  # and so does an explicit argument
    assert set_by_environment({**home, "KBQA_TOP_K": "3"}) == {"home", "top_k"}
    save_settings(tmp_path, {"top_k": 5})  # merged with what was saved
    assert (from_env(home).top_k, from_env(home).answer_language) == (5, "zh")


@pytest.mark.parametrize(("changes", "message"), [
    ({"top_k": 0}, "KBQA_TOP_K"), ({"answer_language": "fr"}, "KBQA_ANSWER_LANGUAGE"),
    ({"temperature": 3}, "KBQA_TEMPERATURE"), ({"n_ctx": "lots"}, "KBQA_N_CTX")])
def test_bad_saved_settings_are_refused_and_nothing_is_written(
        tmp_path: Path, changes: dict, message: str) -> None:
    from kbqa.settings import save_settings

    with pytest.raises(SettingError, match=message):
        save_settings(tmp_path, changes)
    assert not (tmp_path / "settings.json").exists()


def test_a_damaged_settings_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text('{"top_k": "many"}', encoding="utf-8")
    with pytest.raises(SettingError, match=r"settings\.json.*fix or delete"):
        from_env({"KBQA_HOME": str(tmp_path)})


def test_ingest_folders_are_absolute_and_trimmed() -> None:
    from kbqa.errors import SettingError
    from kbqa.settings import from_env

    settings = from_env({"KBQA_INGEST_FOLDERS": " /srv/team , /srv/shared\n"})
    assert settings.ingest_folders == ("/srv/team", "/srv/shared")
    with pytest.raises(SettingError, match="absolute"):
        from_env({"KBQA_INGEST_FOLDERS": "docs"})
