"""eval.loglik_convention=lm_eval reproduces lm-evaluation-harness 0.4 itself on the demo questions.

lm-eval scores medtune's own contexts and choices through its HFLM wrapper of the same model; its
per-choice log-likelihoods and its multiple_choice acc / acc_norm / acc_bytes
(lm_eval.api.task.ConfigurableTask.process_results) must be medtune's under that convention.
"""

from __future__ import annotations

import pytest

from medtune.config import EvalConfig, LoglikConvention, QuantizationConfig
from medtune.evaluation.local import LocalBackend, inference
from medtune.evaluation.prompts import build_prompts
from medtune.evaluation.scoring import lm_eval_accuracies
from medtune.models import load_base_model
from medtune.qa_data import load_questions

lm_eval = pytest.importorskip("lm_eval", reason="the dev extra installs lm-eval")
np = pytest.importorskip("numpy")


def lm_eval_figures(lls: list[float], choices: list[str], gold: list[int]) -> dict[str, float]:
    """lm-eval 0.4.13's multiple_choice process_results, for a question with (possibly several) gold indices."""
    lls_arr = np.array(lls)
    pred = np.argmax(lls_arr)
    pred_norm = np.argmax(lls_arr / np.array([float(len(c)) for c in choices]))
    pred_bytes = np.argmax(lls_arr / np.array([float(len(c.encode("utf-8"))) for c in choices]))
    return {
        f"lm_eval/{k}": float(p in gold) for k, p in (("acc", pred), ("acc_norm", pred_norm), ("acc_bytes", pred_bytes))
    }


def test_lm_eval_convention_matches_lm_evaluation_harness(tiny_models):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = load_base_model(tiny_models["tiny_gptneox"], QuantizationConfig())
    cfg = EvalConfig(suite="demo", loglik_convention=LoglikConvention.lm_eval, batch_size=8)
    every = load_questions(cfg)
    # Every fourth question (demo-021 among them) and the multiple-answer ones, each with its prompt in the suite:
    # lm-eval's harness takes 0.13 s per batch of 8 choices, so all 104 questions cost 8 s and prove nothing more
    picked = [i for i, q in enumerate(every) if i % 4 == 0 or q.n_answers > 1]
    every_prompt = build_prompts(every, cfg)
    questions, prompts = [every[i] for i in picked], [every_prompt[i] for i in picked]
    with inference(model):
        answers = LocalBackend(model, tokenizer, cfg).answer(questions, prompts)
    harness = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)
    requests = [
        Instance("loglikelihood", {}, (p.text, c), idx=j) for p in prompts for j, c in enumerate(p.continuations)
    ]
    theirs = iter(ll for ll, _ in harness.loglikelihood(requests, disable_tqdm=True))
    expected: dict[str, list[float]] = {}
    for question, prompt, answer in zip(questions, prompts, answers, strict=True):
        lls = [next(theirs) for _ in prompt.continuations]
        # float32 sums batched two ways: up to 1.1e-5 apart on a -34 log-likelihood (demo-021), i.e. 3e-7 relative
        assert np.allclose(answer.choice_scores, lls, rtol=1e-6, atol=1e-5), question.problem_id
        gold = [question.labels.index(letter) for s in question.gold_sets for letter in s]
        for key, value in lm_eval_figures(lls, prompt.continuations, gold).items():
            expected.setdefault(key, []).append(value)
    ours = lm_eval_accuracies(questions, prompts, answers)
    assert ours == {key: sum(v) / len(v) for key, v in expected.items()}
    assert any(q.n_answers > 1 for q in questions)  # the top-1-in-gold rule is exercised
