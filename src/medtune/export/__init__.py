"""Merge and export: a finished train.py run as a standalone Hugging Face model folder, with a model card.

    python -m medtune.export outputs/2026-01-01/12-00-00-000000 --out exports/opencalm-qlora   # merged weights
    python -m medtune.export RUN_DIR --out exports/opencalm-qlora-adapter --adapter-only          # the adapter alone
    medtune export RUN_DIR --out exports/opencalm-qlora --push-to-hub me/opencalm-7b-medical-qlora

The folder (safetensors, tokenizer with its chat template, generation config, README.md, medtune_export.json)
loads with `AutoModelForCausalLM.from_pretrained` alone, and `evaluate.py base_model.path=<folder>` scores it like
any base. Modules:
    merge    which runs can be exported; the run's model loaded as trained, dequantized, merged; the files written
    card     the model card generated from the run (the report's cells for the QA results)
    hub      --push-to-hub through huggingface_hub
    command  the command line (`python -m medtune.export`, `medtune export`) and the export's W&B run
"""
