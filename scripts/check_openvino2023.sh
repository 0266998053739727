#!/usr/bin/env bash
# Check that the compiled FP16 IRs (graph/AgeNet.xml, graph/GenderNet.xml) still read and run on the oldest
# OpenVINO pip installs here, 2023.0.2 on Python 3.11 (pip has no older release for 3.11: the 2022.3 wheels,
# which never held the NCS2's MYRIAD plugin anyway, stop at Python 3.10). That is the nearest a machine
# without a stick gets to the 2022.3.1 runtime the NCS2 needs: the same IR version 11 reader and opsets.
# run_inference.py runs in a separate venv (data/ov2023/venv, made once: OpenVINO 2023.0.2, numpy < 2,
# requirements-edge's opencv-python-headless) through openvino.runtime, the API 2022.3 has, on a face crop, a
# folder and a group photo, and its answers are compared with the checkout's OpenVINO (same classes,
# probabilities within TOLERANCE). Prints the operations (type-opset) the IRs use.
#
# Usage: scripts/check_openvino2023.sh [FACE_CROP FOLDER GROUP_PHOTO]   (default: from ../shared)
# Env: GRAPH_DIR (default graph), OV2023_DIR (default data/ov2023), TOLERANCE (default 1e-4), PYTHON.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
die() { echo "check_openvino2023.sh: $*" >&2; exit 2; }

work="${OV2023_DIR:-data/ov2023}" graph="${GRAPH_DIR:-graph}" tolerance="${TOLERANCE:-1e-4}"
python=".venv/bin/python" old="$work/venv/bin/python" shared="../shared"
pins=(openvino==2023.0.2 "numpy<2" protobuf==7.36.2)
opencv="$(grep -m1 '^opencv-python-headless==' requirements-edge.txt)"  # built on numpy 2, runs on 1.x too
face="${1:-}" folder="${2:-}" photo="${3:-}"

[ -x "$python" ] || die "no .venv in $root: run scripts/setup_venv.sh first"
for net in AgeNet GenderNet; do
  [ -f "$graph/$net.xml" ] || die "no $graph/$net.xml: run compile2Movidius.sh first, or set GRAPH_DIR"
done
source scripts/check_inputs.sh
check_inputs 20

# --- the old runtime, in its own venv (made once) ----------------------------------------------------------
if [ "$(cat "$work/venv/.pins" 2> /dev/null)" != "${pins[*]} $opencv" ]; then
  rm -rf "$work/venv"
  "${PYTHON:-python3}" -m venv "$work/venv" || die "cannot create a venv in $work/venv with ${PYTHON:-python3}"
  "$old" -m pip install -q --disable-pip-version-check "${pins[@]}" 2>&1 | grep -v '^WARNING: Location' || true
  "$old" -m pip install -q --disable-pip-version-check --no-deps "$opencv" 2>&1 | grep -v '^WARNING: Location' || true
  "$old" -c "import openvino.runtime, cv2" 2> /dev/null || die "installing ${pins[*]} $opencv into $work/venv failed (network?)"
  echo "${pins[*]} $opencv" > "$work/venv/.pins"
fi
echo "old runtime: $("$old" -c 'from openvino.runtime import get_version; print(get_version())') on $("$old" --version)"

# --- the FP16 IRs only (an INT8 build beside them would be picked on CPU) ----------------------------------
view="$work/graph" && rm -rf "$view" && mkdir -p "$view"
for file in "$graph"/AgeNet.* "$graph"/GenderNet.* "$graph"/age_gender_mean.npy; do
  [ -e "$file" ] && ln -s "$(realpath "$file")" "$view/"
done
echo "operations: $(grep -ohE 'type="[A-Za-z]+" version="[a-z0-9]+"' "$view"/*.xml | sed -E 's/type="([^"]*)" version="([^"]*)"/\1-\2/' \
  | sort -u | tr '\n' ' ')"
grep -q 'version="11"' "$view/AgeNet.xml" && echo "IR version: 11"

# --- run both runtimes, compare ----------------------------------------------------------------------------
infer=(run_inference.py --json --device CPU --graph_dir "$view" --cache_dir "")
status=0
for mode in face folder photo; do
  input="${!mode}"
  for side in new old; do
    exe="$python" && [ "$side" = old ] && exe="$old"
    "$exe" "${infer[@]}" --image_path "$input" > "$work/$side-$mode.jsonl" 2> "$work/$side-$mode.err" \
      || die "OpenVINO $side on $input failed: $(grep -v '^notice' "$work/$side-$mode.err" | tail -1)"
  done
  "$python" -m agegender.deploy.compare "$work/new-$mode.jsonl" "$work/old-$mode.jsonl" --tolerance "$tolerance" \
    --name "OpenVINO 2023.0.2 vs $("$python" -c 'import openvino; print(openvino.__version__.split("-")[0])'), $mode" \
    || status=1
done
[ "$status" = 0 ] && echo "OpenVINO 2023.0.2 check passed: it reads and runs the FP16 IRs with the same classes" \
  || echo "OpenVINO 2023.0.2 check FAILED (outputs in $work/)"
exit "$status"
