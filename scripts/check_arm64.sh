#!/usr/bin/env bash
# Check run_inference.py on a Raspberry Pi 4 and 5 without one: a 64-bit Raspberry Pi OS Bookworm userland
# (Debian 12 arm64: Python 3.11, glibc 2.36) assembled from Debian's arm64 packages, the aarch64 wheels of
# requirements-edge.txt (no torch), run under qemu-aarch64-static as a Cortex-A72 (Pi 4) and a Cortex-A76
# (Pi 5) on a face crop, a folder and a group photo (Haar), and the group photo again with the UltraFace
# detector and O-Net alignment (mode "aligned", when ../shared/caffe-fixtures holds their Caffe files: the CNN
# detectors compiled on the emulated core, the aligned crops); each answer is compared with this x86 machine's
# (classes equal, every probability within TOLERANCE). A check and a benchmark of correctness, not a test:
# emulation takes minutes and its timings say nothing about a real Pi.
#
# Usage: scripts/check_arm64.sh [FACE_CROP FOLDER GROUP_PHOTO]   (default: from ../shared)
# Needs: a Debian/Ubuntu host with apt (arm64 packages are downloaded, never installed), qemu-user-static,
# the checkout's .venv, compiled graphs in GRAPH_DIR (default graph/, compile2Movidius.sh). Downloads and
# results are cached in ARM64_DIR (default data/arm64/); a second run only runs the comparisons.
# The FP16 IRs are compared (an INT8 build is used on x86 CPUs only; see docs/inference.md).
# Env: CPUS (default "cortex-a72 cortex-a76"), MODES (default "face folder photo aligned"), TOLERANCE (default
# 1e-5), ALIGNED_TOLERANCE (default 0.02: in mode "aligned" the detector and O-Net run on each core's own
# kernels, so the landmarks, hence the aligned crop, differ by a fraction of a pixel; boxes and classes must
# still be equal), GRAPH_DIR, ARM64_DIR, DETECTOR_DIR (default ../shared/caffe-fixtures).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
die() { echo "check_arm64.sh: $*" >&2; exit 2; }

work="${ARM64_DIR:-data/arm64}" graph="${GRAPH_DIR:-graph}" cpus="${CPUS:-cortex-a72 cortex-a76}"
tolerance="${TOLERANCE:-1e-5}" python=".venv/bin/python" sysroot="$work/sysroot" site="$work/site"
shared="../shared" detectors="${DETECTOR_DIR:-../shared/caffe-fixtures}"
modes="face folder photo"
if compgen -G "$detectors/ultraface/*.caffemodel" > /dev/null && compgen -G "$detectors/mtcnn*/det3.caffemodel" > /dev/null; then
  modes="$modes aligned"
fi
modes="${MODES:-$modes}"
face="${1:-}" folder="${2:-}" photo="${3:-}"

[ -x "$python" ] || die "no .venv in $root: run scripts/setup_venv.sh first"
[ -f "$graph/AgeNet.xml" ] && [ -f "$graph/GenderNet.xml" ] \
  || die "no compiled graphs in $graph/ (AgeNet.xml, GenderNet.xml): run compile2Movidius.sh first, or set GRAPH_DIR"
command -v qemu-aarch64-static > /dev/null \
  || die "qemu-aarch64-static is missing: sudo apt-get install qemu-user-static"
command -v apt-get > /dev/null && command -v dpkg > /dev/null \
  || die "apt-get and dpkg are needed to fetch Debian's arm64 packages (run on Debian 12 or Ubuntu)"
mkdir -p "$work/out"

# --- inputs: one UTKFace chip, a folder of 4 chips, a small group photo ------------------------------------
source scripts/check_inputs.sh
check_inputs 4

# --- the arm64 userland: python3.11 and the libraries it and the wheels load, from Debian 12 ---------------
if [ ! -x "$sysroot/usr/bin/python3.11" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    [ "$(id -u)" = 0 ] || die "arm64 is not a dpkg architecture here: sudo dpkg --add-architecture arm64 && sudo apt-get update"
    dpkg --add-architecture arm64
    apt-get update -qq || die "apt-get update failed (network?)"
  fi
  packages=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances python3.11-minimal:arm64 libpython3.11-stdlib:arm64 libstdc++6:arm64 \
      libgomp1:arm64 2> /dev/null | grep -E '^(lib|python3\.11|zlib1g|gcc-12-base).*:arm64$' | sort -u) || true
  [ -n "$packages" ] || die "apt knows no arm64 python3.11 (run: sudo apt-get update; this needs Debian 12 sources)"
  rm -rf "$work/debs" "$sysroot.tmp" && mkdir -p "$work/debs" "$sysroot.tmp"
  (cd "$work/debs" && apt-get download $packages > /dev/null) || die "apt-get download of arm64 packages failed"
  for deb in "$work/debs"/*.deb; do dpkg -x "$deb" "$sysroot.tmp"; done
  mv "$sysroot.tmp" "$sysroot"
  echo "sysroot: $(ls "$work/debs" | wc -l) Debian 12 arm64 packages in $sysroot"
fi

# --- the aarch64 wheels: every manylinux tag a glibc 2.36 system accepts ----------------------------------
want="$(sha256sum requirements-edge.txt | cut -d' ' -f1)"
if [ "$(cat "$site/.requirements.sha256" 2> /dev/null)" != "$want" ]; then
  platforms=(--platform manylinux2014_aarch64)
  for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
  target=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 "${platforms[@]}")
  rm -rf "$work/wheels" "$site.tmp"
  "$python" -m pip download -q --disable-pip-version-check "${target[@]}" -d "$work/wheels" -r requirements-edge.txt \
    || die "pip found no aarch64 wheels for requirements-edge.txt (network, or a pin without an aarch64 wheel)"
  "$python" -m pip install -q --disable-pip-version-check "${target[@]}" --no-index --find-links "$work/wheels" \
    --target "$site.tmp" -r requirements-edge.txt || die "installing the aarch64 wheels into $site failed"
  rm -rf "$site" && mv "$site.tmp" "$site" && echo "$want" > "$site/.requirements.sha256"
fi
[ ! -d "$site/torch" ] || die "$site holds torch: requirements-edge.txt must not pull it in"
ov_wheel="$(basename "$(ls "$work/wheels"/openvino-[0-9]*.whl)")"
glibcxx="$(grep -aoh 'GLIBCXX_3\.4\.[0-9]*' "$site"/openvino/libs/*.so* | sort -uV | tail -1)"
echo "wheels: $ov_wheel (libstdc++ up to $glibcxx); $(ls "$work/wheels" | grep -v '^openvino-[0-9]' | tr '\n' ' ')"

# --- run: x86 reference, then each emulated core, on the FP16 IRs; compare ---------------------------------
view="$work/graph" && rm -rf "$view" && mkdir -p "$view"
for file in "$graph"/AgeNet.* "$graph"/GenderNet.* "$graph"/age_gender_mean.npy; do
  [ -e "$file" ] && ln -s "$(realpath "$file")" "$view/"
done
infer=(run_inference.py --json --device CPU --graph_dir "$view" --cache_dir "$work/ov-cache")
status=0
aligned="$photo"
for mode in $modes; do
  input="${!mode}" args=() limit="$tolerance"
  if [ "$mode" = aligned ]; then
    args=(--detector ultraface --detector-dir "$(realpath "$detectors")" --align onet)
    limit="${ALIGNED_TOLERANCE:-0.02}"
  fi
  "$python" "${infer[@]}" "${args[@]}" --image_path "$input" > "$work/out/x86-$mode.jsonl" 2> "$work/out/x86-$mode.err" \
    || die "x86 run on $input failed: $(tail -1 "$work/out/x86-$mode.err")"
  for cpu in $cpus; do
    start=$(date +%s)
    QEMU_LD_PREFIX="$(realpath "$sysroot")" PYTHONPATH="$site:$root" PYTHONNOUSERSITE=1 \
      qemu-aarch64-static -cpu "$cpu" "$sysroot/usr/bin/python3.11" "${infer[@]}" "${args[@]}" --image_path "$input" \
      > "$work/out/$cpu-$mode.jsonl" 2> "$work/out/$cpu-$mode.err" \
      || die "$cpu run on $input failed: $(grep -v '^notice' "$work/out/$cpu-$mode.err" | tail -1)"
    echo "$cpu $mode ($input): emulated in $(( $(date +%s) - start )) s"
    "$python" -m agegender.deploy.compare "$work/out/x86-$mode.jsonl" "$work/out/$cpu-$mode.jsonl" \
      --tolerance "$limit" --name "$cpu vs x86, $mode" || status=1
  done
done
[ "$status" = 0 ] && echo "arm64 check passed ($modes): same boxes and classes as x86 on $cpus, probabilities within" \
  "$tolerance$([[ " $modes " == *" aligned "* ]] && echo " (aligned: ${ALIGNED_TOLERANCE:-0.02})")" \
  || echo "arm64 check FAILED: see the differences above (outputs in $work/out/)"
exit "$status"
