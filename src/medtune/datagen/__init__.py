"""Instruction data from medical text through any OpenAI-compatible endpoint (generate_data.py)."""
