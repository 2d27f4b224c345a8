"""QA evaluation of local models (generate or log-likelihood) and API models, scored by `metrics`.

One pipeline (`pipeline.evaluate`: load → prompt → answer → score → write) for every backend; a backend only
answers (`answer.Answerer`). Modules, by concern:
- `config`: evaluate.py's schema and checks (torch-free, so a config mistake shows before torch is imported);
- `prompts`: the two prompt styles (`eval.prompt`):
  - `jmedlora`: the paper's Japanese instruction/input/response template (the `alpaca_ja` template
    training uses, so a tuned model is asked in the format it learned), 0/1-shot, answer = choice text;
  - `igakuqa`: the benchmark's own style: choices labelled a, b, c, ..., answer = letters, k-shot;
- `local`: a transformers model in one of two modes (`eval.mode`):
  - `generate`: greedy decoding, batched with left padding and the KV cache, stopped at the first
    newline; the response is mapped to letters and choice texts (medtune.evaluation.metrics.interpret);
  - `loglik`: each choice's summed log-probability given the prompt, the prompt encoded once per
    question and its KV cache shared by all choices; the k best choices answer a k-answer question.
    Calculation questions (no choices) fall back to generation;
- `api`: any OpenAI-compatible server through medtune.api_client (the policy, preflight, progress and resume it
  shares with generate_data.py): every attempt is appended to `api_answers.jsonl` as it arrives, and a re-run in
  the same directory pays only for questions without an answer yet;
- `answer`: what the pipeline gets back from a model (`Answer`) and what answers (`Answerer`);
- `metrics`: the paper's metrics (exact match, gestalt, accuracy) and IgakuQA's official scoring;
- `scoring`: metrics.json and predictions.jsonl. An evaluation is a score only when its questions were answered:
  when more than `openai.max_failed_share` of them failed, no accuracy is written and the run fails;
- `tracking`: the evaluation's W&B run, summary, predictions table and per-category chart.

This file imports nothing, so `medtune.evaluation.config` stays torch-free.
"""
