# The GPU kit's shared part, sourced by scripts/gpu-check.sh and scripts/gpu-train.sh
# (docs/backends.md, "A GPU lease"). On the device machine everything is unpacked and computed
# under gpu-work/ (ignored by git, so a warm machine keeps it from one call to the next); what
# comes back is packed after every step into at most eight files under $OUT, so a command
# killed at its time limit still returns all it finished.
#
# Settings (environment):
#   KIT_LIMIT      seconds the command may take (default 560: a call's 600 s less a margin)
#   KIT_DEVICES    the backends to try (default "cuda vulkan"; the rehearsal uses "cpu")
#   KIT_REHEARSAL  1: the tiny model and small shapes, for a machine without a GPU
#   KIT_DTYPES     the dtypes to benchmark (default "f32 f16 bf16")
#   KIT_LENS       the prefill lengths to benchmark (default: the plan of scripts/gpu-check.sh)

kit_init() {
  KIT_T0=$SECONDS
  KIT_LIMIT=${KIT_LIMIT:-560}
  KIT_OUT=${OUT:-gpu-out}
  KIT_REHEARSAL=${KIT_REHEARSAL:-0}
  KIT_DEVICES=${KIT_DEVICES:-cuda vulkan}
  work=$PWD/gpu-work
  res=$work/results
  mkdir -p "$KIT_OUT" "$work/bin" "$work/assets" "$res" "$work/cubecl" "$work/nv"
  : > "$res/failures.txt"
  trap kit_pack EXIT
}

# Seconds left before the packing reserve.
kit_left() { echo $((KIT_LIMIT - 25 - (SECONDS - KIT_T0))); }

# kit_step NAME LIMIT CMD...: CMD with its output in results/NAME.log, stopped at LIMIT seconds
# or when the command's time runs out; a failure or a stop is listed in failures.txt. A step
# that cannot get 10 seconds is listed as not reached. Packs afterwards.
kit_step() {
  local name=$1 limit=$2 left rc=0
  shift 2
  left=$(kit_left)
  if [ "$left" -lt 10 ]; then
    echo "$name: not reached (time limit)" >> "$res/failures.txt"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit $limit s, $((SECONDS - KIT_T0)) s in)" >&2
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" > "$res/$name.log" 2>&1 || rc=$?
  echo "$name: $((SECONDS - t0)) s, exit $rc" >> "$res/steps.txt"
  [ "$rc" = 0 ] || echo "$name: failed or stopped (exit $rc$([ "$rc" = 124 ] && echo ", time limit"))" \
    >> "$res/failures.txt"
  kit_pack
}

# The binaries, the texts and (once both halves have come) the model, unpacked into gpu-work/.
kit_unpack() {
  if [ ! -f gpu-dist/bin.tar.xz ] && [ ! -x "$work/bin/focus" ]; then
    echo "the machine holds no kit: it was given back between calls; call again with carry gpu-dist" |
      tee -a "$res/failures.txt" >&2
    exit 2
  fi
  if [ gpu-dist/bin.tar.xz -nt "$work/bin/focus" ]; then
    tar -C "$work/bin" -xJf gpu-dist/bin.tar.xz
  fi
  [ -f gpu-dist/libvulkan.so.1 ] && cp -f gpu-dist/libvulkan.so.1 "$work/bin/"
  [ -d "$work/assets/books" ] || [ ! -f gpu-train/texts.tar.xz ] ||
    tar -C "$work/assets" -xJf gpu-train/texts.tar.xz
  local model=$work/assets/SmolLM2-135M-Instruct.Q4_1.gguf
  if [ ! -f "$model" ] && [ -f gpu-model/model.1 ] && [ -f gpu-train/model.2 ]; then
    cat gpu-model/model.1 gpu-train/model.2 | xz -dc > "$model.tmp"
    if (cd "$work/assets" && sed 's/$/  SmolLM2-135M-Instruct.Q4_1.gguf.tmp/' \
        "$OLDPWD/gpu-train/model.sha256" | sha256sum -c --quiet -); then
      mv "$model.tmp" "$model"
    else
      rm -f "$model.tmp"
      echo "model: the two halves do not join to the packed file (sha256)" >> "$res/failures.txt"
    fi
  fi
  KIT_MODEL=
  [ -f "$model" ] && KIT_MODEL=$model
  export PATH="$work/bin:$PATH"
}

# The environment of the machine: the GPU's name (which names the caches), the Vulkan loader
# and driver manifest, and what the CUDA backend needs at run time (the driver, NVRTC and the
# CUDA headers its kernels include). A backend whose needs are missing is dropped from
# KIT_DEVICES with a line saying what is missing; env.txt records everything.
kit_env() {
  local env=$res/env.txt
  : > "$env"
  KIT_GPU=cpu
  if [ "$KIT_REHEARSAL" != 1 ]; then
    local name
    name=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
      sed -n 1p) || true
    echo "gpu: ${name:-none (nvidia-smi found no NVIDIA GPU)}" >> "$env"
    case "$name" in
      *H200*) KIT_GPU=h200 ;;
      *H100*) KIT_GPU=h100 ;;
      '') KIT_GPU=unknown ;;
      *) KIT_GPU=$(echo "${name%%,*}" | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-') ;;
    esac
  fi
  echo "caches named: $KIT_GPU" >> "$env"
  # cubecl's environment (autotune results and compiled kernels) lives in gpu-work/, starts
  # from the copy a previous lease brought back (gpu-cache/, committed) and is packed back.
  if [ ! -f "$work/cubecl/$KIT_GPU.db" ] && [ -f "gpu-cache/$KIT_GPU-cubecl.tar.xz" ]; then
    tar -C "$work/cubecl" -xJf "gpu-cache/$KIT_GPU-cubecl.tar.xz"
  fi
  printf '[environment]\nname = "%s"\npath = { directory = "%s" }\n\n[compilation]\ncache = true\n' \
    "$KIT_GPU" "$work/cubecl" > cubecl.toml
  # Minimal autotuning keeps first runs within the lease (it may pick slower kernels).
  export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
  # The driver's cache of PTX compiled to machine code, kept and packed the same way.
  export CUDA_CACHE_PATH=$work/nv CUDA_CACHE_MAXSIZE=4294967296
  if [ -z "$(ls -A "$work/nv")" ] && [ -f "gpu-cache/$KIT_GPU-nv.tar.xz" ]; then
    tar -C "$work/nv" -xJf "gpu-cache/$KIT_GPU-nv.tar.xz"
  fi
  export LD_LIBRARY_PATH="$work/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local devices=
  for d in $KIT_DEVICES; do
    case "$d" in
      cuda) kit_cuda_env >> "$env" && devices="$devices cuda" ;;
      vulkan) kit_vulkan_env >> "$env" && devices="$devices vulkan" ;;
      *) devices="$devices $d" ;;
    esac
  done
  KIT_DEVICES=${devices# }
  echo "devices: ${KIT_DEVICES:-none}" >> "$env"
  cat "$env" >&2
}

kit_cuda_env() {
  local lib nvrtc hdr ok=0
  lib=$(ldconfig -p | awk '/libcuda\.so\.1 / && !n++ {print $NF}')
  echo "cuda: driver libcuda.so.1 ${lib:-MISSING}"
  [ -n "$lib" ] || ok=1
  # NVRTC: CUDA's toolkit folders, then Python's nvidia-* wheels.
  # (-H: /usr/local/cuda is often a link to the versioned folder.)
  nvrtc=$(find -H ${CUDA_PATH:+"$CUDA_PATH"} /usr/local/cuda /usr/local/cuda-* /usr/lib/x86_64-linux-gnu \
      /opt /usr/local/lib -name 'libnvrtc.so.13*' -not -name '*builtins*' 2>/dev/null | sed -n 1p)
  echo "cuda: NVRTC libnvrtc.so.13 ${nvrtc:-MISSING}"
  if [ -n "$nvrtc" ]; then
    export LD_LIBRARY_PATH="$(dirname "$nvrtc"):$LD_LIBRARY_PATH"
  else
    ok=1
  fi
  # The headers: cubecl reads $CUDA_PATH/include (cuda_fp16.h, cuda_bf16.h and their kin).
  hdr=$(find -H ${CUDA_PATH:+"$CUDA_PATH/include"} /usr/local/cuda/include /usr/local/cuda-*/include \
      /usr/include /opt -name cuda_fp16.h -path '*/include/*' 2>/dev/null | sed -n 1p)
  echo "cuda: headers cuda_fp16.h ${hdr:-MISSING}"
  if [ -n "$hdr" ]; then
    CUDA_PATH=$(dirname "$(dirname "$hdr")")
    export CUDA_PATH
    echo "cuda: CUDA_PATH=$CUDA_PATH"
  else
    ok=1
  fi
  [ "$ok" = 0 ] || echo "cuda: dropped (something above is MISSING)"
  return "$ok"
}

kit_vulkan_env() {
  if ! ldconfig -p | grep 'libvulkan\.so\.1 ' > /dev/null && [ ! -f "$work/bin/libvulkan.so.1" ]; then
    echo "vulkan: loader libvulkan.so.1 MISSING; dropped"
    return 1
  fi
  # Headless: the driver's GLX manifest cannot create an instance without a display; a
  # manifest naming the EGL library can.
  if [ -z "${VK_ICD_FILENAMES:-}" ]; then
    local drv
    drv=$(ldconfig -p | awk '/libEGL_nvidia\.so\.0 / && !n++ {print $NF}')
    [ -n "$drv" ] || drv=$(find -H /usr/local/nvidia /usr/lib/x86_64-linux-gnu -name libEGL_nvidia.so.0 \
      2>/dev/null | sed -n 1p)
    if [ -n "$drv" ]; then
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3"}}\n' \
        "$drv" > "$work/nvidia_egl_icd.json"
      export VK_ICD_FILENAMES=$work/nvidia_egl_icd.json
    fi
  fi
  echo "vulkan: VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-unset}"
}

# Everything that comes back, in at most eight files (written to a temporary name and moved,
# so a kill never leaves half a file): summary.md, results.tar.xz, the two caches and, after
# training, train.tar.xz.
kit_pack() {
  local f
  kit_summary > "$KIT_OUT/.summary.tmp" 2>/dev/null && mv "$KIT_OUT/.summary.tmp" "$KIT_OUT/summary.md"
  kit_tar results.tar.xz "$work" results
  [ -n "$(ls -A "$work/cubecl")" ] && kit_tar "${KIT_GPU:-gpu}-cubecl.tar.xz" "$work/cubecl" .
  [ -n "$(ls -A "$work/nv")" ] && kit_tar "${KIT_GPU:-gpu}-nv.tar.xz" "$work/nv" .
  [ -d "$work/train-out" ] && kit_tar train.tar.xz "$work" train-out
  for f in "$KIT_OUT"/.*.tmp; do [ -e "$f" ] && rm -f "$f"; done
  return 0
}

kit_tar() {
  tar -C "$2" -cf - "$3" 2>/dev/null | xz -T0 -3 > "$KIT_OUT/.$1.tmp" && mv "$KIT_OUT/.$1.tmp" "$KIT_OUT/$1"
}

# The summary: the environment, each step's time, the tests' verdicts, the benchmark tables
# (or the rows a stopped benchmark finished) and the failures.
kit_summary() {
  echo "# GPU kit ($(date -u +%FT%TZ), $((SECONDS - KIT_T0)) s)"
  echo; echo '```'; cat "$res/env.txt" "$res/steps.txt" 2>/dev/null; echo '```'
  local f
  for f in "$res"/tests-*.log; do
    [ -f "$f" ] || continue
    echo; echo "## $(basename "$f" .log)"; echo; echo '```'
    grep -E '^test |test result|error|panicked' "$f" | head -60 || true
    echo '```'
  done
  for f in "$res"/bench-*.log "$res"/smoke-*.log "$res"/train.log; do
    [ -f "$f" ] || continue
    echo; echo "## $(basename "$f" .log)"; echo
    if grep -q '^| mode' "$f"; then
      grep -v '^row ' "$f" | grep -E '^\||^model:|x$' || true
    else
      echo "No table; rows measured:"; echo
      grep '^row ' "$f" | sed 's/^row /    /' || echo "    none"
      tail -5 "$f" | sed 's/^/    /'
    fi
  done
  echo; echo '## Failures'; echo
  cat "$res/failures.txt"
}
