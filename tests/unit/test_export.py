"""`medtune export` on a real tiny QLoRA run: the folder is plain transformers, matches the run's model, scores the
run's tuned accuracy through evaluate.py, carries a card made from the run, continues the W&B lineage; bad input
is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from omegaconf import OmegaConf
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from medtune.config import QuantizationConfig
from medtune.export import command
from medtune.jsonl import read_jsonl_objects
from medtune.models import load_base_model, load_trained
from medtune.report.records import read_correct, read_run_dir
from medtune.run_dir import (
    EXPORT_RECORD,
    EXPORT_SUBDIR,
    MODEL_CARD,
    MODEL_SUBDIR,
    PREDICTIONS_FILE,
    RESOLVED_CONFIG,
    RESULTS_FILE,
    TUNED_EVAL_SUBDIR,
    RunState,
    write_status,
)
from medtune.stats import bootstrap_ci

from helpers import compose, train_job
from wandb_records import finished_offline_runs

QUESTIONS = "eval.limit=24"
# Logits of the exported model against the run's own model, float32 throughout. Measured on this tiny Llama: the
# merge (W + BA rounded once) moves logits of magnitude ~10 by 8e-6, against the dequantized base + adapter and
# against the 4-bit base + adapter alike (bitsandbytes' CPU path dequantizes, then multiplies in float32); merging
# into the original full-precision weights instead moves them by the NF4 quantization error, orders larger.
LOGIT_TOLERANCE = 1e-4
CHOICE_SCORE_TOLERANCE = 1e-3  # a choice's summed log-probability (a few tokens of the above)
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"


@pytest.fixture(scope="module")
def qlora_run(tiny_models, cache_dir: Path, tmp_path_factory) -> Path:
    """A 3-step QLoRA run of the tiny Llama, scored on 24 demo questions before and after tuning."""
    run_dir = tmp_path_factory.mktemp("qlora") / "run"
    overrides = ["base_model=tiny_llama", "tuning=qlora", "trainer.max_steps=3", "trainer.save_steps=1000", QUESTIONS]
    train_job(compose("train", *overrides, cache_dir=cache_dir), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def exported(qlora_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "tiny-llama-qlora"
    command.main([str(qlora_run), "--out", str(out)])
    return out


def _logits(model, tokenizer, texts: list[str]) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [model(**tokenizer(text, return_tensors="pt")).logits[0] for text in texts]


def _max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def test_the_exported_qlora_folder_is_plain_transformers_and_matches_the_runs_model(qlora_run, exported):
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", MODEL_CARD} <= {
        p.name for p in exported.iterdir()
    }
    model = AutoModelForCausalLM.from_pretrained(exported)
    tokenizer = AutoTokenizer.from_pretrained(exported)
    assert type(model).__name__ == "LlamaForCausalLM" and not isinstance(model, PeftModel)
    assert not any("lora" in name for name in load_file(exported / "model.safetensors"))  # merged, nothing left over
    assert getattr(model.config, "quantization_config", None) is None and model.dtype == torch.float32
    prompts = [row["prompt"] for _, row in read_jsonl_objects(qlora_run / TUNED_EVAL_SUBDIR / PREDICTIONS_FILE)][:4]
    got = _logits(model, tokenizer, prompts)

    as_trained, _, tc = load_trained(qlora_run)  # the 4-bit base + adapter, as the run scored it
    four_bit = _logits(as_trained, tokenizer, prompts)
    base, _ = load_base_model(tc.base_model, tc.quantization)
    dequantized = PeftModel.from_pretrained(base.dequantize(dtype=torch.float32), str(qlora_run / MODEL_SUBDIR))
    original = PeftModel.from_pretrained(
        load_base_model(tc.base_model, QuantizationConfig())[0], str(qlora_run / MODEL_SUBDIR)
    )
    assert _max_difference(got, _logits(dequantized, tokenizer, prompts)) <= LOGIT_TOLERANCE
    assert _max_difference(got, four_bit) <= LOGIT_TOLERANCE
    assert _max_difference(got, _logits(original, tokenizer, prompts)) > 100 * LOGIT_TOLERANCE  # the wrong base shows


def test_evaluate_scores_the_exported_folder_as_its_own_base_with_the_runs_tuned_accuracy(
    qlora_run, exported, cache_dir, tmp_path
):
    from medtune.evaluation.pipeline import run

    out = tmp_path / "eval"
    metrics = run(compose("evaluate", f"base_model.path={exported}", QUESTIONS, cache_dir=cache_dir), out)
    results = json.loads((qlora_run / RESULTS_FILE).read_text())
    assert metrics["accuracy"] == results["eval/demo/accuracy"]
    tuned = qlora_run / TUNED_EVAL_SUBDIR / PREDICTIONS_FILE
    assert read_correct(out / PREDICTIONS_FILE) == read_correct(tuned)  # the same questions, each scored alike
    scores = {row["problem_id"]: row["choice_scores"] for _, row in read_jsonl_objects(out / PREDICTIONS_FILE)}
    for _, row in read_jsonl_objects(tuned):
        assert scores[row["problem_id"]] == pytest.approx(row["choice_scores"], abs=CHOICE_SCORE_TOLERANCE)
    record = read_run_dir(out)  # the report: a row of its own, named after the folder, in its run's column
    assert (record.base_model, record.column, record.status) == (exported.name, ("qlora", 3), "finished")


def test_the_model_card_is_made_from_the_run(qlora_run, exported):
    card = ModelCard.load(exported / MODEL_CARD)
    assert card.data.library_name == "transformers" and "qlora" in card.data.tags
    assert card.data.license is None and "licence: see the base model's card" in card.text  # the tiny base has none
    tuned = read_correct(qlora_run / TUNED_EVAL_SUBDIR / PREDICTIONS_FILE)
    accuracy = sum(tuned.values()) / len(tuned)
    low, high = bootstrap_ci(list(tuned.values()))
    assert f"| after tuning (this model) | **{accuracy:.3f}** [{low:.3f}, {high:.3f}]" in card.text
    assert "| the base before tuning (nf4, as the run loaded it) |" in card.text and "p = " in card.text
    assert "| `adapter.r` | `32` |" in card.text and "| `quantization.mode` | `nf4` |" in card.text
    assert "dequantized it to float32 before merging" in card.text
    record = json.loads((exported / EXPORT_RECORD).read_text())
    assert (record["kind"], record["tuning"], record["run_dir"]) == ("merged", "qlora", str(qlora_run.resolve()))


def test_the_export_is_a_model_artifact_that_uses_the_runs_adapter_artifact(qlora_run, exported):
    [trained] = finished_offline_runs(qlora_run)
    [adapter] = trained.logged("model")
    [export_run] = finished_offline_runs(qlora_run / EXPORT_SUBDIR)
    [used] = export_run.used("model")
    [logged] = export_run.logged("model")
    assert (used.name, used.digest) == (adapter.name, adapter.digest)  # the very adapter version the run logged
    assert logged.name == f"{adapter.name}-merged" and "model.safetensors" in logged.entries
    assert logged.metadata["run_dir"] == str(qlora_run.resolve()) and export_run.exit_code == 0


def test_adapter_only_exports_the_adapter_with_the_card(qlora_run, tmp_path):
    out = tmp_path / "adapter"
    out.mkdir()  # an empty folder is a fine --out
    interrupted = tmp_path / ".adapter.exporting"  # what a killed export leaves beside --out: started over
    interrupted.mkdir()
    (interrupted / "half.safetensors").write_bytes(b"torn")
    command.main([str(qlora_run), "--out", str(out), "--adapter-only"])
    assert not interrupted.exists()
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", MODEL_CARD} <= names
    assert not {"training_args.bin", "model.safetensors", "half.safetensors"} & names
    assert ModelCard.load(out / MODEL_CARD).data.library_name == "peft"
    trained = load_file(qlora_run / MODEL_SUBDIR / "adapter_model.safetensors")
    assert all(
        torch.equal(tensor, trained[name]) for name, tensor in load_file(out / "adapter_model.safetensors").items()
    )


def test_the_runs_chat_template_goes_with_the_merged_weights(qlora_run, tmp_path):
    run_dir = tmp_path / "chat-run"
    shutil.copytree(qlora_run, run_dir, ignore=shutil.ignore_patterns("wandb", "checkpoints", EXPORT_SUBDIR))
    tokenizer = AutoTokenizer.from_pretrained(run_dir / MODEL_SUBDIR)  # as a chat base's tokenizer carries one
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(run_dir / MODEL_SUBDIR)
    command.main([str(run_dir), "--out", str(tmp_path / "out"), "--wandb-mode", "disabled"])
    exported = AutoTokenizer.from_pretrained(tmp_path / "out")
    chat = exported.apply_chat_template([{"role": "user", "content": "頭痛"}], tokenize=False)
    assert chat == "<|user|>頭痛\n<|assistant|>"
    assert not (run_dir / EXPORT_SUBDIR).exists()  # W&B disabled: no export run


def _fake_run(qlora_run: Path, tmp_path: Path, state: RunState = RunState.finished, **changes) -> Path:
    """A run dir with the QLoRA run's config (keys changed as given) in another state; no weights are loaded."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = OmegaConf.load(qlora_run / RESOLVED_CONFIG)
    for key, value in changes.items():
        OmegaConf.update(config, key.replace("__", "."), value)
    OmegaConf.save(config, run_dir / RESOLVED_CONFIG)
    write_status(run_dir, state)
    (run_dir / MODEL_SUBDIR).mkdir()
    return run_dir


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "is not a train.py run dir (no resolved_config.yaml)."),
        ("failed", "has not finished (state: failed); finish it first"),
        ("untuned", "trained nothing (adapter=none, no model/)"),
        ("full_adapter", "--adapter-only: this run fine-tuned every weight (adapter=full); there is no adapter."),
        ("out_not_empty", "already exists and is not empty; give a new folder (nothing was written)."),
        ("pissa_unconverted", "init_lora_weights=pissa_niter_4 rewrote the base weights"),
        ("offline_push", "--push-to-hub me/x: HF_HUB_OFFLINE is set, so the hub cannot be reached"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(qlora_run, tmp_path, capsys, case, message):
    run_dir, out, extra = qlora_run, tmp_path / "out", []
    if case == "empty":
        run_dir = tmp_path
    elif case == "failed":
        run_dir = _fake_run(qlora_run, tmp_path, RunState.failed)
    elif case == "untuned":
        run_dir = _fake_run(qlora_run, tmp_path, adapter__method="none")
        shutil.rmtree(run_dir / MODEL_SUBDIR)
    elif case == "full_adapter":
        run_dir, extra = (
            _fake_run(qlora_run, tmp_path, adapter__method="full", quantization__mode="none"),
            ["--adapter-only"],
        )
    elif case == "pissa_unconverted":
        run_dir = _fake_run(qlora_run, tmp_path)
        config = json.loads((qlora_run / MODEL_SUBDIR / "adapter_config.json").read_text())
        (run_dir / MODEL_SUBDIR / "adapter_config.json").write_text(
            json.dumps(config | {"init_lora_weights": "pissa_niter_4"})
        )
    elif case == "out_not_empty":
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
    elif case == "offline_push":  # conftest sets HF_HUB_OFFLINE=1: refused before anything is merged
        extra = ["--push-to-hub", "me/x"]
    with pytest.raises(SystemExit) as exit_info:
        command.main([str(run_dir), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("medtune: error: ") and err.count("\n") == 1
    assert message in err
    assert case == "out_not_empty" or not out.exists()  # nothing was written


def test_an_unreachable_hub_is_one_line_and_keeps_the_export(qlora_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    out = tmp_path / "adapter"
    with pytest.raises(SystemExit) as exit_info:
        command.main([str(qlora_run), "--out", str(out), "--adapter-only", "--push-to-hub", "me/x"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1
    assert err.startswith("medtune: error: --push-to-hub me/x: the upload failed (") and f"hf upload me/x {out}" in err
    assert (out / "adapter_model.safetensors").is_file()  # the export itself is complete


def test_only_a_saved_model_folder_on_the_default_base_is_scored_as_itself(exported, cache_dir, tmp_path):
    from medtune.errors import ConfigError
    from medtune.evaluation.config import to_evaluate_config

    def base(*overrides: str):
        return to_evaluate_config(compose("evaluate", *overrides, cache_dir=cache_dir)).base_model

    folder = base(f"base_model.path={exported}")
    assert (folder.tiny, folder.name, folder.path) == (False, exported.name, str(exported))
    assert base(f"base_model.path={exported}", "base_model.tiny=false", "base_model.name=mine").name == "mine"
    assert (base().tiny, base().name) == (True, "tiny_gptneox")  # medtune's own tiny build stays the tiny base
    (tmp_path / "notes.txt").write_text("not a model")  # no config.json: still refused, nothing overwritten
    with pytest.raises(ConfigError, match="holds files medtune did not create"):
        base(f"base_model.path={tmp_path}")


def test_the_card_names_the_presets_licence_a_local_cards_licence_and_the_online_run(cache_dir, tmp_path):
    from huggingface_hub import ModelCardData

    from medtune.config import to_train_config
    from medtune.export.card import _tracking_section, base_licence

    assert base_licence(to_train_config(compose("train", "base_model=opencalm_7b", cache_dir=cache_dir))) == (
        "cc-by-sa-4.0"
    )
    local = tmp_path / "published"
    local.mkdir()
    ModelCard(f"---\n{ModelCardData(license='apache-2.0').to_yaml()}\n---\n# a model\n").save(local / MODEL_CARD)
    tc = to_train_config(compose("train", "base_model=medcalm_7b", f"base_model.path={local}", cache_dir=cache_dir))
    tc.base_model.license = None  # the preset's licence first; without one, the folder's own card
    assert base_licence(tc) == "apache-2.0"
    online = {"wandb/mode": "online", "wandb/url": "https://wandb.ai/me/medtune/runs/abc123", "wandb_run_id": "abc123"}
    assert "- W&B run: https://wandb.ai/me/medtune/runs/abc123" in _tracking_section(tmp_path, online)
