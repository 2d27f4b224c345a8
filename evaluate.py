"""Score a model on Japanese medical QA (paper metrics + IgakuQA's official scoring), tracked in W&B.

python evaluate.py run_dir=outputs/2026-01-01/12-00-00-000000                   # a trained run (base + adapter)
python evaluate.py base_model=opencalm_7b eval=igakuqa eval.path=/data/IgakuQA   # an untuned base
python evaluate.py backend=openai openai.model=gpt-4o eval=igakuqa eval.path=/data/IgakuQA   # an API model
python evaluate.py -m backend=openai openai.model=gpt-4o,gpt-4o-mini   # a failed job is recorded, the others go on
"""

from medtune.commands.evaluate import main

if __name__ == "__main__":
    main()
