#!/usr/bin/env bash
# Long fuzz runs: every fuzz target of the module (or those whose package or
# name matches one of the arguments) for FUZZTIME each, JOBS at a time, one
# worker per target (-parallel 1, so JOBS is the number of busy cores).
# Prints one Markdown table row per target for docs/reliability.md; each
# run's whole output stays in OUT. A crasher the engine finds is written to
# the package's testdata/fuzz/<target>/ and becomes a regression seed there.
#
#   FUZZTIME=30m JOBS=2 bench/fuzz-long.sh                 # every target
#   FUZZTIME=30m JOBS=2 bench/fuzz-long.sh ./measure FuzzState
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${FUZZTIME:-30m}"
JOBS="${JOBS:-2}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export FUZZTIME OUT

fuzzre='^func (Fuzz[A-Za-z0-9_]*)\(f \*testing\.F\)'
targets=$(git grep --untracked -l -E "$fuzzre" -- '*_test.go' | while read -r file; do
  sed -n -E "s/$fuzzre.*/\\1/p" "$file" | sed "s|^|./$(dirname "$file") |"
done | sort -u)
if [ "$#" -gt 0 ]; then
  filtered=""
  for want in "$@"; do
    filtered+=$(echo "$targets" | awk -v w="$want" '$1 == w || $2 == w')$'\n'
  done
  targets=$(echo "$filtered" | sed '/^$/d' | sort -u)
fi
[ -n "$targets" ] || { echo "no fuzz target matches: $*" >&2; exit 2; }

echo "# $(echo "$targets" | wc -l) targets, $FUZZTIME each, $JOBS at a time; logs in $OUT" >&2
echo "| package | target | duration | execs | corpus (new interesting) | result |"
echo "|---|---|---|---|---|---|"
echo "$targets" | xargs -P "$JOBS" -L 1 bash -c '
  pkg="$0" target="$1"
  log="$OUT/$(echo "$pkg.$target" | tr "/" "_" | sed "s/^\._//").log"
  start=$(date +%s)
  if go test "$pkg" -run "^\$" -fuzz "^$target\$" -fuzztime "$FUZZTIME" -parallel 1 -timeout 0 >"$log" 2>&1; then
    result="PASS"
  elif grep -q "context deadline exceeded" "$log" && ! grep -qE "Failing input written|panic:|build failed|--- FAIL: $target/" "$log"; then
    result="PASS (engine stopped at its deadline)"
  else
    result="FAIL: $(grep -m1 -E "Failing input written|panic:|--- FAIL" "$log" | tr "|" "/")"
  fi
  secs=$(( $(date +%s) - start ))
  last=$(grep -E "^fuzz: elapsed: " "$log" | tail -n 1)
  execs=$(echo "$last" | sed -n -E "s/.*execs: ([0-9]+).*/\\1/p")
  new=$(echo "$last" | sed -n -E "s/.*new interesting: ([0-9]+) \\(total: ([0-9]+)\\).*/\\2 (\\1)/p")
  elapsed=$(echo "$last" | sed -n -E "s/^fuzz: elapsed: ([0-9hms]+),.*/\\1/p")
  printf "| \`%s\` | \`%s\` | %s (wall %ds) | %s | %s | %s |\n" "${pkg#./}" "$target" "${elapsed:-?}" "$secs" \
    "${execs:-0}" "${new:-?}" "$result"
'
