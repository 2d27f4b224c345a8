"""Local QA evaluation on a tiny GPT-NeoX the test trains to answer five questions.

The padding-sensitive paths (left-padded generation, shared-prefix log-likelihood) must give the same
answers batched as one question at a time, and loglik and generate must agree on a model that knows
the answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from medtune.config import EvalConfig
from medtune.errors import ConfigError
from medtune.evaluation.config import to_evaluate_config
from medtune.evaluation.local import generate_responses, inference, loglik_scores
from medtune.evaluation.pipeline import evaluate_model
from medtune.evaluation.prompts import answer_text, build_prompts
from medtune.qa_data import load_questions

from helpers import CONF

QUESTIONS = [
    {"problem_id": "T1", "problem_text": "高アンモニア血症をきたす疾患はどれか。",
     "choices": ["Gaucher病", "von Gierke病", "Hurler症候群", "メープルシロップ尿症",
                 "オルニチントランスカルバミラーゼ欠損症"],
     "answer": ["e"], "points": "1", "category": "小児科"},
    {"problem_id": "T2", "problem_text": "心筋梗塞後に突然収縮期雑音が出現した。原因はどれか。2つ選べ。",
     "choices": ["大動脈弁閉鎖不全症", "左室自由壁破裂", "解離性大動脈瘤", "心室中隔穿孔", "乳頭筋断裂"],
     "answer": ["d", "e"], "points": "1", "category": "循環器"},
    {"problem_id": "T3", "problem_text": "造影CTの前に確認すべきことはどれか。",
     "choices": ["喫煙歴", "飲酒歴", "肝機能", "腎機能", "認知機能"], "answer": ["d"], "points": 3,
     "category": "総論"},
    {"problem_id": "T4", "problem_text": "介入研究はどれか。",
     "choices": ["横断研究", "コホート研究", "症例対照研究", "ケースシリーズ研究", "ランダム化比較試験"],
     "answer": ["e"], "points": "3", "category": "公衆衛生"},
    {"problem_id": "T5", "problem_text": "子宮頸癌と最も関連が深いのはどれか。",
     "choices": ["飲酒", "喫煙", "睡眠", "塩分摂取", "身体活動"], "answer": ["b"], "points": "1",
     "category": "婦人科"},
]  # fmt: skip


@pytest.fixture(scope="module")
def questions_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qa") / "questions.jsonl"
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def eval_cfg(questions_file) -> EvalConfig:
    return EvalConfig(suite="unit", source="jsonl", path=str(questions_file), shots=1, batch_size=5, max_new_tokens=40)


@pytest.fixture(scope="module")
def trained(eval_cfg, tmp_path_factory):
    """A 2-layer GPT-NeoX overfit on the suite's own 1-shot prompts + answers (~100 steps, a few seconds)."""
    from medtune.tiny import build_model, train_tokenizer

    questions = load_questions(eval_cfg)
    prompts = build_prompts(questions, eval_cfg)
    texts = [p.text + answer_text(q, "jmedlora") for q, p in zip(questions, prompts, strict=True)]
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    corpus.write_text("\n".join(texts * 3), encoding="utf-8")
    tokenizer = train_tokenizer(corpus)
    model = build_model("gpt_neox", tokenizer)
    rows = [tokenizer.encode(p.text, add_special_tokens=False) for p in prompts]
    targets = [tokenizer.encode(answer_text(q, "jmedlora"), add_special_tokens=False) for q in questions]
    width = max(len(r) + len(t) + 1 for r, t in zip(rows, targets, strict=True))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt, target) in enumerate(zip(rows, targets, strict=True)):
        seq = [*prompt, *target, tokenizer.eos_token_id]
        ids[i, : len(seq)], mask[i, : len(seq)] = torch.tensor(seq), 1
        labels[i, len(prompt) : len(seq)] = torch.tensor(seq[len(prompt) :])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(100):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.1, f"the tiny model did not learn the answers (loss {loss.item():.3f})"
    return model, tokenizer


def test_loglik_and_generate_agree_on_a_model_that_knows_the_answers(trained, eval_cfg, tmp_path):
    model, tokenizer = trained
    by_mode = {}
    for mode in ("loglik", "generate"):
        metrics = evaluate_model(model, tokenizer, replace(eval_cfg, mode=mode), tmp_path / mode)
        rows = [json.loads(line) for line in (tmp_path / mode / "predictions.jsonl").read_text().splitlines()]
        by_mode[mode] = [row["parsed"] for row in rows]
        assert metrics["accuracy"] == 1.0 and metrics["official_accuracy"] == 1.0, (mode, rows)
        assert metrics["points"] == metrics["points_total"] == 9
        assert metrics["category/循環器/accuracy"] == 1.0
        assert json.loads((tmp_path / mode / "metrics.json").read_text())["n_questions"] == 5
    assert by_mode["loglik"] == by_mode["generate"]
    assert by_mode["loglik"][1] == ["d", "e"]  # the 2-answer question gets both choices


def test_evaluation_restores_training_mode(trained, eval_cfg, tmp_path):
    model, tokenizer = trained
    model.train()
    evaluate_model(model, tokenizer, replace(eval_cfg, limit=2), tmp_path)
    assert model.training
    model.eval()
    evaluate_model(model, tokenizer, replace(eval_cfg, limit=2), tmp_path)
    assert not model.training


def test_batched_loglik_scores_equal_one_question_at_a_time(trained, eval_cfg):
    model, tokenizer = trained
    prompts = build_prompts(load_questions(eval_cfg), eval_cfg)
    texts, conts = [p.text for p in prompts], [p.continuations for p in prompts]
    with inference(model):
        batched = loglik_scores(model, tokenizer, texts, conts, batch_size=5, terminator=tokenizer.eos_token_id)
        single = loglik_scores(model, tokenizer, texts, conts, batch_size=1, terminator=tokenizer.eos_token_id)
        # Questions 2-5 share their exemplar, so their batch encodes a long common prefix only once.
        shared = loglik_scores(model, tokenizer, texts[1:], conts[1:], batch_size=4, terminator=tokenizer.eos_token_id)
        # Reference: the plain full-sequence forward pass, no cache, no padding.
        full = [[*tokenizer.encode(texts[0] + c, add_special_tokens=False), tokenizer.eos_token_id] for c in conts[0]]
        n_prompt = len(tokenizer.encode(texts[0], add_special_tokens=False))
        reference = []
        for seq in full:
            logprobs = model(input_ids=torch.tensor([seq])).logits[0, :-1].log_softmax(-1)
            reference.append(sum(logprobs[t - 1, seq[t]].item() for t in range(n_prompt, len(seq))))
    assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=1e-3)
    assert torch.allclose(torch.tensor(shared), torch.tensor(single[1:]), atol=1e-3)
    assert torch.allclose(torch.tensor(batched[0]), torch.tensor(reference), atol=1e-3)


def test_loglik_encodes_the_suites_shared_prefix_once_at_every_batch_size(trained, eval_cfg):
    """Every batch reuses the previous batch's prefix cache, so the exemplar shared by all prompts enters the model
    once per suite, also one question at a time (the same scores: the test above); batch 1 has no padding to count."""
    model, tokenizer = trained
    prompts = build_prompts(load_questions(eval_cfg), eval_cfg)[1:]  # the first question has another exemplar
    texts, conts = [p.text for p in prompts], [p.continuations for p in prompts]
    rows = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    shared = next(i for i in range(min(map(len, rows))) if len({r[i] for r in rows}) > 1)
    assert shared > 50  # the template and exemplar of the 1-shot prompts
    choice_tokens = sum(len(tokenizer.encode(c, add_special_tokens=False)) + 1 for cs in conts for c in cs)
    fed: list[int] = []
    hook = model.get_input_embeddings().register_forward_pre_hook(lambda _, args: fed.append(args[0].numel()))
    try:
        with inference(model):
            loglik_scores(model, tokenizer, texts, conts, batch_size=1, terminator=tokenizer.eos_token_id)
    finally:
        hook.remove()
    assert sum(fed) <= sum(map(len, rows)) + choice_tokens - (len(rows) - 1) * shared


def test_loglik_batches_keep_a_differing_exemplar_out_of_the_majoritys_batches():
    """Six prompts share a 40-token exemplar, one (the exemplar question itself) has another: length order would
    batch it with the longest, so that batch shared 5 tokens; by prefix it goes last, and each batch is longest
    first."""
    from medtune.evaluation.local import _batches_by_prefix, _common_prefix_len

    exemplar, other = list(range(1, 41)), [1, 2, 3, 4, 5, *range(100, 135)]
    rows = [exemplar + [200 + i] * (10 + i) for i in range(6)] + [other + [300] * 12]
    batches = list(_batches_by_prefix(rows, 3))
    assert batches == [[5, 4, 3], [2, 1, 0], [6]]
    assert all(_common_prefix_len([rows[i] for i in batch]) >= 40 for batch in batches[:2])


def test_batched_generation_equals_one_prompt_at_a_time(trained, eval_cfg):
    model, tokenizer = trained
    texts = [p.text for p in build_prompts(load_questions(eval_cfg), eval_cfg)]
    with inference(model):
        batched = generate_responses(model, tokenizer, texts, batch_size=5, max_new_tokens=40)
        single = generate_responses(model, tokenizer, texts, batch_size=1, max_new_tokens=40)
    assert batched == single
    assert batched[0].strip() == "オルニチントランスカルバミラーゼ欠損症"


def test_igakuqa_prompt_scores_letters(trained, eval_cfg, tmp_path):
    """The benchmark's prompt style runs end to end in both modes (the model was not trained on it)."""
    model, tokenizer = trained
    for mode in ("loglik", "generate"):
        cfg = replace(eval_cfg, prompt="igakuqa", shots=2, mode=mode, max_new_tokens=4)
        metrics = evaluate_model(model, tokenizer, cfg, tmp_path / mode)
        rows = [json.loads(line) for line in (tmp_path / mode / "predictions.jsonl").read_text().splitlines()]
        assert metrics["n_questions"] == 5 and metrics["n_failed"] == 0
        assert "答え:" in rows[0]["prompt"] and "必ずa,b,c,d,eの中からちょうど1個選んでください。" in rows[0]["prompt"]
        if mode == "loglik":
            assert all(len(row["parsed"]) == len(row["gold"][0]) for row in rows)


@pytest.mark.parametrize("suite", sorted(p.stem for p in (CONF / "eval").glob("*.yaml")))
def test_every_eval_suite_composes_into_a_valid_config(suite, compose_config):
    cfg = to_evaluate_config(compose_config("evaluate", f"eval={suite}", "eval.path=/data/x"))
    assert cfg.eval.suite in (suite, "custom") and cfg.backend == "local" and cfg.adapter.method == "none"


def test_a_hub_benchmark_is_a_config_file_yakugakuqa_reads_1_based_answers(tmp_path, compose_config):
    rows = [
        {"problem_id": "109001", "problem_text": "どれか。", "choices": ["x", "y", "z"], "text_only": True,
         "answer": ["2"], "comment": "", "num_images": 0},
        {"problem_id": "109002", "problem_text": "2つ選べ。", "choices": ["x", "y", "z"], "text_only": False,
         "answer": ["1", "3"], "comment": "", "num_images": 1},
    ]  # fmt: skip
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = to_evaluate_config(
        compose_config("evaluate", "eval=yakugakuqa", f"eval.hub.data_files={data}", "eval.text_only=false")
    )
    questions = load_questions(cfg.eval)
    assert [(q.problem_id, q.answer, q.text_only) for q in questions] == [
        ("109001", ["b"], True), ("109002", ["a", "c"], False)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["adapter=lora"], "pass run_dir=<a train.py run dir>"),
        (["backend=openai", "openai.concurrency=0"], "openai.concurrency"),
        (["backend=openai", "openai.retry.budget_s=0"], "openai.retry.budget_s=0.0 is out of range: allowed > 0"),
        (["backend=openai", "openai.max_failed_share=2"], "openai.max_failed_share=2.0 is out of range: allowed [0,"),
        (["eval=igakuqa"], "eval=igakuqa needs eval.path=<directory or file>"),
    ],
)
def test_configs_that_cannot_run_fail_before_loading_anything(overrides, message, compose_config):
    with pytest.raises(ConfigError, match=re.escape(message)):
        to_evaluate_config(compose_config("evaluate", *overrides))


@pytest.mark.parametrize(
    ("override", "allowed"), [("backend=telepathy", "[local, openai]"), ("eval.mode=beam", "[generate, loglik]")]
)
def test_an_enumerated_value_fails_at_composition(override, allowed, compose_config):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("evaluate", override)
    assert allowed in str(err.value.__cause__ or err.value)


def test_one_loglik_pass_gives_every_normalisation_and_rotations_measure_position_bias(trained, eval_cfg, tmp_path):
    model, tokenizer = trained
    metrics = evaluate_model(model, tokenizer, replace(eval_cfg, permutations=3), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert metrics["n_questions"] == 5 and len(rows) == 15  # headline metrics: the published order only
    assert [row["rotation"] for row in rows] == [0] * 5 + [1] * 5 + [2] * 5
    assert all(len(row["choice_tokens"]) == 5 and min(row["choice_tokens"]) >= 2 for row in rows)  # text + EOS
    for name in ("accuracy_norm_chars", "accuracy_bytes", "accuracy_norm_tokens"):
        assert 0.0 <= metrics[name] <= 1.0
    orders = [metrics[f"permutation/{k}/accuracy"] for k in range(3)]
    assert orders[0] == metrics["accuracy"] == 1.0  # trained on the published order
    assert metrics["consistent_accuracy"] <= min(orders) and metrics["permutations"] == 3
    assert metrics["n_excluded"] == 0
