#!/usr/bin/env bash
# Accuracy and confusion matrix of the newest AgeNet snapshot on data/lmdb/age_test_lmdb.
# Extra arguments go to `python -m agegender test`: --ir graph/AgeNet.xml, --oversample, --json F, --plot F.png
exec "$(dirname "$0")/scripts/test_net.sh" AgeNet age "$@"
