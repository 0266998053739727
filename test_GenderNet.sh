#!/usr/bin/env bash
# Accuracy and confusion matrix of the newest GenderNet snapshot on data/lmdb/gender_test_lmdb.
# Extra arguments go to `python -m agegender test`: --ir graph/GenderNet.xml, --oversample, --json F, --plot F.png
exec "$(dirname "$0")/scripts/test_net.sh" GenderNet gender "$@"
