"""dataset.prompt_template=chat: the tokenizer's chat template, labels on the assistant's turn only, the same
template for the QA prompts, token for token as TRL's SFTTrainer builds it."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from medtune.chat import GENERATION_MARKER, ChatFormat
from medtune.config import DatasetConfig, EvalConfig, QuantizationConfig, to_train_config
from medtune.data import IGNORE_INDEX, Record, build_collator, tokenize_conversation
from medtune.enums import PackingStrategy
from medtune.errors import ConfigError
from medtune.evaluation.prompts import build_prompts
from medtune.models import load_base_model
from medtune.qa_data import load_questions

SYSTEM = "あなたは日本の医師国家試験の受験者です。"
RECORDS = [
    Record(instruction="2型糖尿病の第一選択薬は何ですか。", input="", output="メトホルミン"),
    Record(instruction="次の症状から考えられる疾患を答えてください。", input="口渇、多飲、多尿", output="糖尿病"),
]
CHAT = DatasetConfig(prompt_template="chat", system_prompt=SYSTEM)
END_OF_TURN = {"tiny_qwen3": "<|im_end|>", "tiny_llama3": "<|eot_id|>"}
GENERATION_PROMPT = {
    "tiny_qwen3": "<|im_start|>assistant\n",
    "tiny_llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
}


@pytest.fixture(scope="module", params=sorted(END_OF_TURN))
def family(request, chat_tokenizer):
    """(name, tokenizer) of each tiny chat base."""
    return request.param, chat_tokenizer(request.param)


def without_markers(tokenizer):
    """The same tokenizer with its template's {% generation %} markers removed, as most hub templates ship."""
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = GENERATION_MARKER.sub("", plain.chat_template).replace("{%- endgeneration %}", "")
    assert GENERATION_MARKER.search(plain.chat_template) is None and "endgeneration" not in plain.chat_template
    return plain


def messages(record: Record) -> list[dict[str, str]]:
    user = f"{record.instruction}\n\n{record.input}" if record.input else record.instruction
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": record.output},
    ]


def learned(example: dict[str, list[int]]) -> list[int]:
    return [t for t in example["labels"] if t != IGNORE_INDEX]


@pytest.mark.parametrize("markers", [True, False])
def test_labels_are_the_assistant_answer_and_its_end_of_turn_token_only(family, markers):
    name, tokenizer = family
    tokenizer = tokenizer if markers else without_markers(tokenizer)
    chat = ChatFormat(tokenizer, SYSTEM)
    assert chat.marks_generation is markers
    for record in RECORDS:
        example = tokenize_conversation(record, chat, CHAT)
        assert example["input_ids"] == list(tokenizer.apply_chat_template(messages(record))["input_ids"])
        text = tokenizer.decode(example["input_ids"])
        assert text.count(SYSTEM) == 1 and record.instruction in text  # system and user turns are in the input
        answer = tokenizer.decode(learned(example))
        # Qwen's template ends a turn with "\n" after <|im_end|>: outside the markers, inside a prompt-completion split
        assert answer.rstrip("\n") == record.output + END_OF_TURN[name]
        first = example["labels"].index(learned(example)[0])
        assert tokenizer.decode(example["input_ids"][:first]).endswith(GENERATION_PROMPT[name])
        assert all(label in (token, IGNORE_INDEX) for token, label in zip(*example.values(), strict=True))
    assert chat.end_of_turn_id == tokenizer.convert_tokens_to_ids(END_OF_TURN[name])


def test_long_turns_are_cut_but_the_template_markers_stay(family):
    name, tokenizer = family
    long = Record(instruction="症状" * 300, input="", output="糖尿病" * 100)
    ds = DatasetConfig(prompt_template="chat", max_input_tokens=16, max_target_tokens=8)
    example = tokenize_conversation(long, ChatFormat(tokenizer), ds)
    assert len(learned(example)) == 8 and learned(example)[-1] == tokenizer.convert_tokens_to_ids(END_OF_TURN[name])
    assert tokenizer.decode(example["input_ids"]).count(END_OF_TURN[name]) == 2  # user's and assistant's turn ends
    assert len(example["input_ids"]) < 16 + 8 + 16  # + the template's few markers
    only_the_end = tokenize_conversation(
        long, ChatFormat(tokenizer), DatasetConfig(prompt_template="chat", max_target_tokens=1)
    )
    assert tokenizer.decode(learned(only_the_end)) == END_OF_TURN[name]  # no room for the answer: the end of turn


def test_train_on_inputs_labels_every_token(family):
    _, tokenizer = family
    ds = DatasetConfig(prompt_template="chat", train_on_inputs=True)
    example = tokenize_conversation(RECORDS[0], ChatFormat(tokenizer, SYSTEM), ds)
    assert example["labels"] == example["input_ids"]


def test_build_datasets_tokenizes_chat_records_with_the_template_variables(family):
    from medtune.data import Splits, build_datasets

    _, tokenizer = family
    train, heldout = build_datasets(Splits(RECORDS, RECORDS[:1]), tokenizer, CHAT, "sft", {"unused_variable": 1})
    chat = ChatFormat(tokenizer, SYSTEM)
    assert train[1] == tokenize_conversation(RECORDS[1], chat, CHAT) and len(heldout) == 1


def test_packed_rows_keep_each_example_assistant_only_labels(family):
    _, tokenizer = family
    chat = ChatFormat(tokenizer, SYSTEM)
    examples = [tokenize_conversation(r, chat, CHAT) for r in RECORDS]
    batch = build_collator(tokenizer, PackingStrategy.varlen)(examples)
    packed = [t for t in batch["labels"][0].tolist() if t != IGNORE_INDEX]
    assert packed == learned(examples[0]) + learned(examples[1])
    assert batch["input_ids"][0].tolist() == examples[0]["input_ids"] + examples[1]["input_ids"]


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # TRL's SFTConfig sets it
@pytest.mark.parametrize("markers", [True, False])
def test_same_input_ids_and_label_mask_as_trl_sft_trainer(family, tmp_path, markers):
    """TRL's SFTTrainer on the same conversations: `assistant_only_loss=True` on messages records for a template
    with generation markers; for one without, TRL's conversational prompt-completion records (completion-only loss)."""
    trl = pytest.importorskip("trl")
    from datasets import Dataset

    from medtune.tiny import build_model

    name, tokenizer = family
    tokenizer = tokenizer if markers else without_markers(tokenizer)
    if markers:
        rows = [{"messages": messages(r)} for r in RECORDS]
    else:
        rows = [{"prompt": messages(r)[:2], "completion": messages(r)[2:]} for r in RECORDS]
    args = trl.SFTConfig(
        output_dir=str(tmp_path), assistant_only_loss=markers, report_to=[], max_length=None, use_cpu=True
    )
    model = build_model("qwen3" if name == "tiny_qwen3" else "llama", tokenizer)  # SFTTrainer only tokenizes here
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    chat = ChatFormat(tokenizer, SYSTEM)
    for record, theirs in zip(RECORDS, trainer.train_dataset, strict=True):
        ours = tokenize_conversation(record, chat, CHAT)
        assert ours["input_ids"] == theirs["input_ids"]
        assert ours["labels"] == theirs["labels"]


@pytest.mark.parametrize("prompt_style", ["jmedlora", "igakuqa"])
def test_qa_prompts_go_through_the_template_with_the_generation_prompt(family, prompt_style):
    name, tokenizer = family
    cfg = EvalConfig(limit=3, chat_template=True, prompt=prompt_style)
    questions = load_questions(cfg)
    chat = ChatFormat(tokenizer, SYSTEM)
    prompts = build_prompts(questions, cfg, chat)
    for prompt in prompts:
        assert prompt.text.endswith(GENERATION_PROMPT[name])
        assert prompt.text == tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
        assert [m["role"] for m in prompt.messages][-3:] == ["user", "assistant", "user"]  # the 1-shot exemplar
        assert prompt.text.count(END_OF_TURN[name]) == len(prompt.messages)
    if prompt_style == "jmedlora":  # the run's system prompt; igakuqa keeps the benchmark's own
        assert prompts[0].messages[0] == {"role": "system", "content": SYSTEM}
    # Scored as trained: the prompt's tokens are those of a training conversation up to the answer.
    prompt = prompts[0]
    full, _ = chat.encode([*prompt.messages, {"role": "assistant", "content": prompt.continuations[0]}])
    ids = tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    assert full[: len(ids)] == ids


def test_a_base_without_a_chat_template_stops_with_one_line_naming_the_key(compose_config, tiny_models, monkeypatch):
    needs = "needs a tokenizer with a chat template"
    with pytest.raises(ConfigError, match=rf"^dataset\.prompt_template=chat {needs}") as err:
        to_train_config(compose_config("train", "dataset.prompt_template=chat"))  # tiny_gptneox: before any build
    assert "\n" not in str(err.value) and "base_model=tiny_gptneox" in str(err.value)
    with pytest.raises(ConfigError, match=rf"^eval\.chat_template=true {needs}"):
        to_train_config(compose_config("train", "eval.chat_template=true"))
    real = to_train_config(compose_config("train", "base_model.tiny=false")).base_model  # any hub or local folder
    monkeypatch.setattr("medtune.models.AutoModelForCausalLM.from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(ConfigError, match=r"^dataset\.prompt_template=chat needs .*tiny_gptneox has none"):
        load_base_model(real, QuantizationConfig(), chat_key="dataset.prompt_template=chat")


def test_a_system_prompt_outside_a_chat_template_is_refused_not_dropped(compose_config):
    with pytest.raises(ConfigError, match=r"^dataset\.system_prompt applies to dataset\.prompt_template=chat only"):
        to_train_config(compose_config("train", "dataset.system_prompt=x"))


def test_a_chat_run_scores_in_its_training_format(compose_config):
    tc = to_train_config(
        compose_config(
            "train", "base_model=tiny_qwen3", "dataset.prompt_template=chat", f"dataset.system_prompt='{SYSTEM}'"
        )
    )
    assert tc.eval.chat_template is True and tc.eval.system_prompt == SYSTEM
    plain = to_train_config(compose_config("train", "base_model=tiny_qwen3"))
    assert plain.eval.chat_template is None and plain.eval.system_prompt is None  # null: not chat, as before the key


def test_the_local_backend_scores_and_stops_at_the_end_of_turn_token(family):
    from medtune.evaluation.local import LocalBackend

    name, tokenizer = family
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN[name])
    chat = LocalBackend(None, tokenizer, EvalConfig(chat_template=True, system_prompt=SYSTEM), {"x": 1})
    assert chat.chat_format == ChatFormat(tokenizer, SYSTEM, {"x": 1}) and chat._terminator() == end
    plain = LocalBackend(None, tokenizer, EvalConfig(chat_template=False))
    assert plain.chat_format is None and plain._terminator() == tokenizer.eos_token_id  # jmedlora: Alpaca's EOS


def test_evaluate_asks_a_trained_run_in_its_own_format_unless_told_otherwise():
    from medtune.evaluation.pipeline import as_trained

    trained = EvalConfig(chat_template=True, system_prompt=SYSTEM)
    assert as_trained(EvalConfig(), trained) == EvalConfig(chat_template=True, system_prompt=SYSTEM)
    assert as_trained(EvalConfig(chat_template=False), trained).chat_template is False
    assert as_trained(EvalConfig(system_prompt="別"), trained).system_prompt == "別"
    assert as_trained(EvalConfig(), EvalConfig(chat_template=False)).chat_template is False


@pytest.mark.parametrize("tiny", [True, False])
def test_train_py_without_a_chat_template_exits_2_with_one_line(compose_config, tiny_models, tmp_path, capsys, tiny):
    """Through train.py's job wrapper: a tiny base stops at the config check, any other before its weights load and
    before a W&B run starts."""
    from helpers import train_job

    cfg = compose_config("train", "dataset.prompt_template=chat", f"base_model.tiny={str(tiny).lower()}")
    with pytest.raises(SystemExit) as exit_info:
        train_job(cfg, tmp_path / "run")
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if "chat template" in line]
    assert exit_info.value.code == 2 and len(lines) == 1 and "Traceback" not in stderr
    assert "dataset.prompt_template=chat needs a tokenizer with a chat template" in lines[0]
    assert not (tmp_path / "run" / "wandb").exists() and not (tmp_path / "run" / "results.json").exists()


def test_a_run_dir_made_before_the_chat_keys_still_matches_its_config(compose_config):
    """A re-run sweep finds its finished cells again: a run that does not use a chat template resolves the new keys
    to null, which is what a resolved config written before they existed reads as."""
    from medtune.config import to_plain_dict
    from medtune.run_dir import changed_keys

    new = to_plain_dict(to_train_config(compose_config("train")))
    old = {**new, "dataset": dict(new["dataset"]), "eval": dict(new["eval"]), "base_model": dict(new["base_model"])}
    for group, key in [("dataset", "system_prompt"), ("eval", "chat_template"), ("eval", "system_prompt"),
                       ("base_model", "tiny_chat_format"), ("base_model", "chat_template_kwargs")]:  # fmt: skip
        del old[group][key]
    assert changed_keys(new, old) == []
