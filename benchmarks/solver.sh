# Sourced by the benchmark scripts: copies of committed solvers with some fields changed, and their last snapshot.

# solver_copy SRC DST "field: value" ...: SRC with each named top-level field replaced (or added) by the given line.
solver_copy() {
  local src="$1" dst="$2" field key
  shift 2
  cp "$src" "$dst.tmp"
  for field in "$@"; do
    key="${field%%:*}"
    grep -v "^$key:" "$dst.tmp" > "$dst.tmp2" || true
    echo "$field" >> "$dst.tmp2" && mv "$dst.tmp2" "$dst.tmp"
  done
  mv "$dst.tmp" "$dst"
}

# final_snapshot SOLVER: the caffemodel its training ends with (snapshot_prefix + _iter_ + max_iter), trained or not.
final_snapshot() {
  local prefix last
  prefix=$(sed -n 's/^snapshot_prefix: *"\(.*\)".*/\1/p' "$1")
  last=$(sed -n 's/^max_iter: *\([0-9]*\).*/\1/p' "$1")
  echo "${prefix}_iter_$last.caffemodel"
}

# solver_net SOLVER: the train_test prototxt it trains (its net: field).
solver_net() {
  sed -n 's/^net: *"\([^"]*\)".*/\1/p' "$1"
}

# pretrain_once NAME "field: value" ...: the shared pre-training's solver copied into data/pretrain/NAME/ with the
# given fields and snapshots into models/pretrain/NAME/, then trained there (train.log, wall_seconds.txt) unless
# its last snapshot exists; RESUME=X.solverstate continues that snapshot instead of starting anew. Needs $python.
pretrain_once() {
  local name="$1" models="models/pretrain/$1" out="data/pretrain/$1" solver start resume=()
  shift
  [ -n "${RESUME:-}" ] && resume=(--snapshot "$RESUME")
  mkdir -p "$models" "$out"
  solver="$out/AgeGenderNet_pretrain_solver.prototxt"
  solver_copy prototxt/AgeGenderNet_pretrain_solver.prototxt "$solver" "$@" \
    "snapshot_prefix: \"$models/AgeGenderNet_pretrain\""
  if [ -f "$(final_snapshot "$solver")" ]; then
    echo "pretrain $name: $(final_snapshot "$solver") exists, not trained again"
    return
  fi
  start=$(date +%s)
  "$python" -m agegender train --solver "$solver" "${resume[@]}" > "$out/train.log" 2>&1
  echo "AgeGenderNet_pretrain $(( $(date +%s) - start ))" > "$out/wall_seconds.txt"
  echo "pretrain $name: $(cat "$out/wall_seconds.txt") s"
}

# lmdb_copy SRC DST DIR NAME...: the train_test prototxt SRC written to DST with each named LMDB
# (source: "data/lmdb/NAME") read from DIR/NAME instead; exits with one line when SRC does not read one of them.
lmdb_copy() {
  local src="$1" dst="$2" dir="$3" lmdb
  shift 3
  cp "$src" "$dst.tmp"
  for lmdb in "$@"; do
    grep -q "source: \"data/lmdb/$lmdb\"" "$dst.tmp" || {
      echo "$(basename "$0"): $src no longer reads data/lmdb/$lmdb" >&2; rm -f "$dst.tmp"; exit 1; }
    sed -i "s#source: \"data/lmdb/$lmdb\"#source: \"$dir/$lmdb\"#" "$dst.tmp"
  done
  mv "$dst.tmp" "$dst"
}
