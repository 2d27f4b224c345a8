"""Instruction data from medical text through any OpenAI-compatible endpoint (generate_data.py). Modules:
config    generate_data.py's schema (source, chunking, prompt, generator, filters, pricing)
chunking  source documents → passages of bounded size
pipeline  plan → requests → parsed records → filters → dedup → outputs, resumable from the request log
batch     generator.batch=true: the same requests through the OpenAI Batch API, reattached after a kill
parsing   a reply → QA pairs, or why it has none
filters   is a parsed pair usable? each rejection with a named reason (rejects.jsonl)
dedup     near-duplicate and evaluation-set contamination removal
storage   the output dir's file names and JSONL writing
"""
