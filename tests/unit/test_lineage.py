"""W&B lineage artifacts, built from files on disk: the same files must give the same artifact wherever used."""

from __future__ import annotations

import json

from medtune.config import DatasetConfig, to_train_config
from medtune.lineage import generated_dataset, generated_dataset_name, model_artifact, training_dataset


def test_the_model_artifact_evaluate_uses_by_reference_is_the_one_train_logged_as_a_copy(compose_config, tmp_path):
    tc = to_train_config(compose_config("train"))
    (tmp_path / "model" / "sub").mkdir(parents=True)
    (tmp_path / "model" / "adapter_model.safetensors").write_bytes(b"weights")
    (tmp_path / "model" / "sub" / "tokenizer.json").write_text("{}")
    copied = model_artifact(tmp_path, tc, {"steps": 5}, "copy")
    referenced = model_artifact(tmp_path, tc, {}, "reference")
    assert copied.manifest.digest() == referenced.manifest.digest()
    assert sorted(copied.manifest.entries) == ["adapter_model.safetensors", "sub/tokenizer.json"]
    assert all(entry.ref is None for entry in copied.manifest.entries.values())
    assert all(entry.ref.startswith("file://") for entry in referenced.manifest.entries.values())  # nothing copied
    assert model_artifact(tmp_path, tc, {}, "auto").metadata["stored_as"] == "copy"  # an adapter is small


def test_records_from_generate_data_are_used_as_its_own_artifact(tmp_path):
    out = tmp_path / "gen-run"
    out.mkdir()
    (out / "records.jsonl").write_text('{"instruction": "q", "output": "a"}\n')
    name = generated_dataset_name(out)
    (out / "manifest.json").write_text(json.dumps({"wandb_artifact": name}))
    logged = generated_dataset(out, name, {"funnel": {}})
    used = training_dataset(DatasetConfig(source="jsonl", path=str(out / "records.jsonl")), "sft")
    assert (used.name, used.type, used.manifest.digest()) == (name, "dataset", logged.manifest.digest())


def test_other_records_are_a_reference_with_the_files_digest(tmp_path):
    records = tmp_path / "mine.jsonl"
    records.write_text('{"instruction": "q", "output": "a"}\n')
    used = training_dataset(DatasetConfig(source="jsonl", path=str(records)), "sft")
    [(name, entry)] = used.manifest.entries.items()
    assert (used.name, name, entry.ref) == ("data-mine", "mine.jsonl", records.resolve().as_uri())
    records.write_text('{"instruction": "q2", "output": "a"}\n')
    changed = training_dataset(DatasetConfig(source="jsonl", path=str(records)), "sft")
    assert changed.manifest.digest() != used.manifest.digest()  # a new version when the data change
