"""The newer peft methods (README "Tuning methods"): each trains for real, saves an adapter that names its method and
applies to the unchanged base, and a method that cannot apply stops at composition."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

from medtune.adapters import AdapterTrainer, prepare_adapter, save_trained
from medtune.config import to_train_config
from medtune.data import build_collator
from medtune.errors import ConfigError
from medtune.models import attach_adapter, load_base_model
from medtune.run_dir import ADAPTER_METHOD_FILE, MODEL_SUBDIR
from medtune.training_args import training_arguments

# What peft's own adapter_config.json says of the method (where it says anything once saved; the others rely on
# medtune's ADAPTER_METHOD_FILE).
PEFT_SAYS = {"rslora": ("use_rslora", True), "vera": ("peft_type", "VERA"), "eva": ("init_lora_weights", "eva")}
# Each method on tiny Llama, EVA (whose data pass is the slow one) on tiny GPT-NeoX; GPT-NeoX trains lora, rslora,
# pissa, loftq and vera in the matrix test too (tests/integration/test_matrix.py).
TRAINED = [(tuning, "tiny_llama") for tuning in ("rslora", "pissa", "olora", "loftq", "loraplus", "vera")]
TRAINED.append(("eva", "tiny_gptneox"))


def train_rows() -> list[dict]:
    """Eight distinct token rows (EVA's SVD needs more samples per batch than components)."""
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": ids, "labels": ids} for ids in torch.randint(5, 800, (8, 24), generator=generator).tolist()]


def trainable(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("tuning", "name"), TRAINED)
def test_each_method_trains_and_saves_an_adapter_for_the_unchanged_base(
    tiny_models, compose_config, tmp_path, name, tuning
):
    tc = to_train_config(
        compose_config(
            "train",
            f"base_model={name}",
            f"tuning={tuning}",
            "adapter.r=8",
            "adapter.dropout=0",
            "trainer.max_steps=3",
            "trainer.batch_size=8",  # one batch: EVA's SVD converges over its repeats in a few passes
        )
    )
    model, tokenizer = load_base_model(tiny_models[name], tc.quantization)
    model = attach_adapter(model, tc.adapter, quantized=tc.quantization.mode != "none")
    args = training_arguments(tc, tmp_path / "checkpoints", evaluates=False)
    rows, collator = train_rows(), build_collator(tokenizer)
    trainer = AdapterTrainer(model=model, adapter=tc.adapter, args=args, train_dataset=rows, data_collator=collator)
    prepare_adapter(trainer.model, tc.adapter, trainer.get_train_dataloader, tmp_path, main=True)
    before = trainable(model)
    trainer.train()
    after = trainable(model)
    assert before and all(not torch.equal(before[key], after[key]) for key in before)  # every trainable tensor moved
    if tuning == "loraplus":  # every B matrix learns loraplus_lr_ratio (16) times faster than every A
        names = {id(p): n for n, p in model.named_parameters()}
        lr = {names[id(p)]: group["initial_lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
        assert {v for k, v in lr.items() if "lora_A" in k} == {args.learning_rate}
        assert {v for k, v in lr.items() if "lora_B" in k} == {16 * args.learning_rate}

    model_dir = tmp_path / MODEL_SUBDIR
    save_trained(trainer, tc.adapter, tc.quantization.mode, model_dir, tmp_path)
    marker = json.loads((model_dir / ADAPTER_METHOD_FILE).read_text())
    assert (marker["method"], marker["tuning"]) == (tuning, tuning)
    if tuning in PEFT_SAYS:
        key, value = PEFT_SAYS[tuning]
        assert json.loads((model_dir / "adapter_config.json").read_text())[key] == value

    # The saved adapter on a freshly loaded base (PiSSA/OLoRA: the unchanged one) is the model that was trained.
    batch = torch.tensor([row["input_ids"] for row in train_rows()[:2]])
    trainer.model.eval()
    with torch.no_grad():
        trained_logits = trainer.model(input_ids=batch).logits
        reloaded, _ = load_base_model(tiny_models[name], tc.quantization)
        reloaded_logits = PeftModel.from_pretrained(reloaded, str(model_dir)).eval()(input_ids=batch).logits
    torch.testing.assert_close(reloaded_logits, trained_logits, atol=1e-4, rtol=1e-4)

    if tuning == "eva":  # a resumed run rebuilds the same initial adapter from the run dir, with no data pass
        again = attach_adapter(load_base_model(tiny_models[name], tc.quantization)[0], tc.adapter, quantized=False)
        prepare_adapter(again, tc.adapter, lambda: pytest.fail("EVA's data pass ran twice"), tmp_path, main=True)
        assert trainable(again).keys() == before.keys()
        assert all(torch.equal(value, before[key]) for key, value in trainable(again).items())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["adapter=pissa", "quantization=nf4"], "adapter=pissa cannot train on quantization=nf4: PiSSA"),
        (["adapter=pissa", "quantization=int8"], "adapter=pissa cannot train on quantization=int8"),
        (["adapter=loftq"], "adapter=loftq cannot train on quantization=none: LoftQ"),
        (["adapter=loftq", "quantization=int8"], "use quantization=nf4"),
        (["adapter=lora", "adapter.loraplus_lr_ratio=4"], "adapter.loraplus_lr_ratio=4.0 applies only to"),
        (["adapter=loraplus", "adapter.loraplus_lr_ratio=null"], "adapter=loraplus needs adapter.loraplus_lr_ratio"),
        (["adapter=loraplus", "adapter.loraplus_lr_ratio=0"], "adapter.loraplus_lr_ratio=0.0 is out of range"),
    ],
)
def test_a_method_that_cannot_apply_stops_at_composition_in_one_line(compose_config, overrides, message):
    with pytest.raises(ConfigError) as err:
        to_train_config(compose_config("train", *overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_loftq_starts_the_4bit_base_closer_to_its_full_precision_weights(tiny_models, compose_config):
    """scaling·B·A fits each layer's quantization error W - dequantize(Q), also at the demo's scaling alpha/r = 2
    (peft's LoftQ step alone fits it only at 1: at 2 the error would come out no smaller than without LoftQ)."""
    import bitsandbytes as bnb
    from safetensors.torch import load_file

    tc = to_train_config(compose_config("train", "base_model=tiny_llama", "tuning=loftq"))
    assert tc.adapter.alpha / tc.adapter.r == 2
    base = tiny_models["tiny_llama"]
    model = attach_adapter(load_base_model(base, tc.quantization)[0], tc.adapter, quantized=True)
    original = load_file(f"{base.path}/model.safetensors")
    layers = [(n, m) for n, m in model.get_base_model().named_modules() if hasattr(m, "lora_A")]
    assert layers and all(isinstance(layer.base_layer, bnb.nn.Linear4bit) for _, layer in layers)
    for name, layer in layers:
        weight, packed = original[f"{name}.weight"], layer.base_layer.weight
        quantized = bnb.functional.dequantize_4bit(packed.data, packed.quant_state)
        delta = layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        assert torch.linalg.norm(weight - quantized - delta) < 0.9 * torch.linalg.norm(weight - quantized), name
