"""Generate instruction records (question/answer pairs) from medical text through an OpenAI-compatible API.

python generate_data.py source.paths=[journals/jcs.txt] dry_run=true   # chunks, requests, token and cost estimate
python generate_data.py source.paths=[journals/jcs.txt] generator=local generator.model=qwen2.5:14b  # a local server
python generate_data.py source.paths=[journals/jcs.txt] output_dir=outputs/jcs  # OpenAI; rerun the same line to resume
"""

from medtune.commands.generate_data import main

if __name__ == "__main__":
    main()
