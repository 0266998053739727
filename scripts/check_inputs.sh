# Sourced by check_arm64.sh and check_openvino2023.sh: the three inputs each check runs run_inference.py on.
# check_inputs N_CHIPS: keeps the FACE_CROP FOLDER GROUP_PHOTO given (in $face $folder $photo), else takes the
# first N_CHIPS UTKFace chips of $shared (the first alone as the face crop, all of them linked into
# $work/inputs/chips as the folder) and a group photo; then checks that each exists. Needs $work, $shared, die().
check_inputs() {
  if [ -z "$face" ]; then
    [ -d "$shared/datasets/utkface-asian" ] || die "no $shared/datasets/utkface-asian: give FACE_CROP FOLDER GROUP_PHOTO"
    local chips chip
    mapfile -t chips < <(ls "$shared/datasets/utkface-asian"/*.jpg | sort | head -"$1")
    face="${chips[0]}" folder="$work/inputs/chips" photo="$shared/photos/group/13.jpg"
    mkdir -p "$folder"
    for chip in "${chips[@]}"; do ln -sf "$(realpath "$chip")" "$folder/"; done
  fi
  local input
  for input in "$face" "$folder" "$photo"; do [ -e "$input" ] || die "input not found: $input"; done
}
