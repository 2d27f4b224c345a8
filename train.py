"""Instruction-tune (or continually pretrain) a base model; every run tracked in W&B.

python train.py                                                   # demo: tiny GPT-NeoX + LoRA, offline
python train.py base_model=tiny_llama quantization=nf4 trainer.max_steps=50   # QLoRA on tiny Llama
python train.py -m base_model=tiny_gptneox,tiny_llama quantization=none,nf4   # 4 runs
"""

from medtune.commands.train import main

if __name__ == "__main__":
    main()
